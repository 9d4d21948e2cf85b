"""Print the per-cycle cost of the PDM forward against one pipeline stage's one-token forward.

SPD hides the draft when PDM time <= stage time (SPEC.md 1.2, "zero bubble"). Eager timings, median of
``--reps`` after warm-up, for a random-weight model of a named shape (latency does not depend on values).

    .venv/bin/python benchmarks/pdm_cost.py --shape smollm2-135m --stages 2 4 --device cpu
    .venv/bin/python benchmarks/pdm_cost.py --stages 4 --draft-vocab 16384 --tower-ffn 640 --agg-rank 64 --device cpu
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from reference.draft import PDMConfig, PipelineDraftModule
from reference.loaders import load_model
from reference.spd_controller import DraftInput, TokenFeatures, stage_bounds


def _median_ms(fn, reps: int, device: torch.device) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="smollm2-135m")
    ap.add_argument("--stages", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--tower-layers", type=int, default=2)
    ap.add_argument("--draft-vocab", type=int, default=None, help="draft vocabulary size (default: full)")
    ap.add_argument("--tower-ffn", type=int, default=None, help="tower FFN width (default: half the target's)")
    ap.add_argument("--agg-rank", type=int, default=32, help="aggregation rank (0 = full matrices)")
    ap.add_argument("--prefix", type=int, default=128, help="tokens already in the caches")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    model, _ = load_model(f"random:{args.shape}", args.device, args.dtype, max_seq_len=args.prefix + 64)
    c, dev = model.config, model.device
    d = c.hidden_size
    print(f"shape={c.name} device={dev} dtype={model.dtype} prefix={args.prefix} tower_layers={args.tower_layers} "
          f"tower_ffn={args.tower_ffn or d // 2} agg_rank={args.agg_rank or 'full'} draft_vocab={args.draft_vocab or c.vocab_size}")
    print(f"{'n':>3} {'stage_layers':>12} {'stage_ms':>9} {'pdm_ms':>8} {'pdm/stage':>9}")
    for n in args.stages:
        start, end = stage_bounds(c.num_layers, n)[0]
        stage, cache = model.stage(start, end), model.stage(start, end).new_cache(1)
        stage(torch.zeros(1, args.prefix, d, device=dev, dtype=model.dtype), torch.arange(args.prefix), cache)
        x = torch.zeros(1, 1, d, device=dev, dtype=model.dtype)
        pos = torch.tensor([args.prefix])
        stage_ms = _median_ms(lambda: stage(x, pos, cache), args.reps, dev)

        vocab = None if args.draft_vocab is None else torch.arange(args.draft_vocab)  # latency ignores which ids
        shape = dict(tower_layers=args.tower_layers, draft_vocab_size=args.draft_vocab, agg_rank=args.agg_rank or None,
                     **({"tower_ffn": args.tower_ffn} if args.tower_ffn else {}))
        pdm = PipelineDraftModule(model, PDMConfig.default(c, n, **shape), vocab_ids=vocab)
        A, L = pdm.config.anchors, c.num_layers

        def feat(p: int, lp: int) -> TokenFeatures:
            return TokenFeatures(0, p, lp, {a: torch.zeros(d, device=dev, dtype=model.dtype) for a in A if a <= lp})
        pdm.begin([feat(p, L) for p in range(args.prefix)])
        P = args.prefix
        bounds = stage_bounds(L, n)
        inp = DraftInput([feat(P, L)], [feat(P + 1 + k, bounds[n - 2 - k][1] if k < n - 1 else 0) for k in range(n)])

        def draft() -> None:
            pdm.crop(P)  # each call appends the completed row; crop back so every rep is the same cycle
            pdm.propose(inp)
        pdm_ms = _median_ms(draft, args.reps, dev)
        print(f"{n:>3} {end - start:>12} {stage_ms:>9.2f} {pdm_ms:>8.2f} {pdm_ms / stage_ms:>9.2f}")


if __name__ == "__main__":
    main()
