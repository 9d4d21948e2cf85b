"""`spd train-draft`: distil the pipeline draft module (and the EAGLE-style chain / PPSD-style baselines) from
the frozen target on offline data (reference/training/make_data.py). docs/training.md has the recipe.

One invocation trains several drafters on the same data: the target's features are computed once (one
teacher-forced pass per sequence, every anchor any of them needs) and reused. ``--budget-s`` is the total
wall clock for training, shared out evenly over the drafters still to train (time a drafter leaves unused
goes to the next). Each drafter resumes from ``<work-dir>/<name>/state.pt`` when it exists.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from sim.errors import InputError


def _int_list(text: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what}: expected comma-separated integers, got {text!r}") from None
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2", help="target: smollm2 (default), a .gguf path (e.g. "
                   "/var/tmp/model/smol.gguf), an HF checkpoint dir, or random:<shape>")
    p.add_argument("--data", required=True, help="training data (.safetensors from reference.training.make_data); "
                   "comma-separated parts (shards) are trained on as one set")
    p.add_argument("--out-dir", required=True, help="checkpoints go to OUT_DIR/<prefix>-pdm-n<n>/ etc.")
    p.add_argument("--work-dir", default=None, help="resume states (default: OUT_DIR/.work)")
    p.add_argument("--methods", default="spd", help="comma list of spd, chain, ppsd (default spd)")
    p.add_argument("--stages", default="4", help="SPD pipeline depths n to train, e.g. 2,3,4,6")
    p.add_argument("--ppsd-stages", default="4", help="stage counts for the PPSD-style draft (its b1 = L/n)")
    p.add_argument("--anchors", default=None, help="SPD anchors (comma list) when one n is trained; default SPEC 1.2")
    p.add_argument("--chain-steps", type=int, default=5, help="drafts per round the chain head is measured with")
    p.add_argument("--tower-layers", type=int, default=2, help="L_s of the SPD/PPSD tower (the chain head uses 1)")
    p.add_argument("--tower-heads", type=int, default=3)
    p.add_argument("--tower-kv-heads", type=int, default=1)
    p.add_argument("--tower-ffn", type=int, default=256)
    p.add_argument("--agg-rank", type=int, default=32, help="rank of the aggregation FCs (0 = full matrices)")
    p.add_argument("--draft-vocab", type=int, default=16384, help="draft vocabulary size (0 = full vocabulary)")
    p.add_argument("--budget-s", type=float, default=60.0, help="total training wall clock over all drafters")
    p.add_argument("--max-steps", type=int, default=100_000, help="per drafter")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--steady-fraction", type=float, default=0.5, help="SPD: share of full-pipeline layouts")
    p.add_argument("--layout-extra-stages", type=int, default=0,
                   help="SPD: train each n-stage drafter on the staircase of n + this many stages (held-out "
                        "top-1 is still measured at n); docs/training.md, session 7")
    p.add_argument("--checkpoint-every-s", type=float, default=60.0)
    p.add_argument("--holdout", type=int, default=32, help="sequences held out for the validation numbers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix", default="smollm2", help="checkpoint directory name prefix")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..draft import PipelineDraftModule, frequent_vocab
    from ..loaders import default_gguf_path, load_model
    from ..training.checkpoints import file_sha256, save_checkpoint, target_record
    from ..training.data import TrainingData
    from ..training.drafts import METHODS, DraftDims, make_config
    from ..training.features import FeatureStore
    from ..training.trainer import TrainSettings, step_loss, train

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise InputError(f"--methods: expected some of {', '.join(METHODS)}, got {args.methods!r}")
    stages = _int_list(args.stages, "--stages")
    ppsd_stages = _int_list(args.ppsd_stages, "--ppsd-stages")
    if any(n < 2 for n in stages + ppsd_stages):
        raise InputError("--stages/--ppsd-stages: SPD needs n >= 2")
    anchors = tuple(_int_list(args.anchors, "--anchors")) if args.anchors else None
    if anchors is not None and len(stages) != 1:
        raise InputError("--anchors: give exactly one --stages value with explicit anchors")
    for name in ("budget_s", "batch_size", "max_steps", "chain_steps"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')}: must be positive")
    if not 0.0 <= args.steady_fraction <= 1.0:
        raise InputError("--steady-fraction: must lie in [0, 1]")
    if args.layout_extra_stages < 0:
        raise InputError("--layout-extra-stages: must be 0 or more")
    torch.manual_seed(args.seed)
    data_files = [x.strip() for x in args.data.split(",") if x.strip()]
    if not data_files:
        raise InputError("--data: give at least one training data file")
    data = TrainingData.load_many(data_files)
    model, _ = load_model(args.model, args.device, args.dtype, max_seq_len=1024)
    L = model.config.num_layers
    if any(n > L for n in stages + ppsd_stages):
        raise InputError(f"--stages: at most {L} stages for a {L}-layer target")
    if any(n + args.layout_extra_stages > L for n in stages):
        raise InputError(f"--layout-extra-stages: n + {args.layout_extra_stages} exceeds the target's {L} layers")
    too_long = max(len(s) for s in data.seqs)
    if too_long + 16 > model.config.max_seq_len:
        raise InputError(f"--data: a sequence of {too_long} tokens exceeds the training context")
    V = model.config.vocab_size
    vocab = None
    if args.draft_vocab:
        if not 1 <= args.draft_vocab <= V:
            raise InputError(f"--draft-vocab: must be in [1, {V}] or 0 for the full vocabulary")
        vocab = _checkpoint_vocab(Path(args.out_dir), args.prefix, args.draft_vocab)
        if vocab is None:
            counts = data.vocab_counts(V)
            vocab = frequent_vocab(torch.repeat_interleave(torch.arange(V), counts), args.draft_vocab, V)
        else:  # continuing earlier checkpoints (a later GPU call, fresh data): keep their vocabulary
            print(f"draft vocabulary: {vocab.numel()} ids from the existing checkpoints in {args.out_dir}")
    dims = DraftDims(args.tower_layers, args.tower_heads, args.tower_kv_heads, args.tower_ffn,
                     args.agg_rank or None, args.draft_vocab or None)
    jobs = []  # (name, method, config)
    if "spd" in methods:
        jobs += [(f"{args.prefix}-pdm-n{n}", "spd", make_config("spd", model, n, dims, anchors)) for n in stages]
    if "chain" in methods:
        jobs.append((f"{args.prefix}-chain", "chain", make_config("chain", model, 2, dims)))
    if "ppsd" in methods:
        jobs += [(f"{args.prefix}-ppsd-n{n}", "ppsd", make_config("ppsd", model, n, dims)) for n in ppsd_stages]
    indices = sorted({b for _, _, c in jobs for b in c.anchors} | {L})
    store = FeatureStore(model, data.seqs, data.prompt_lens, indices, progress=not args.no_progress)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(data), generator=g).tolist()
    hold = perm[:min(args.holdout, max(0, len(data) - 1))]
    train_ids = perm[len(hold):]
    gguf = Path(args.model) if args.model.endswith(".gguf") else (default_gguf_path() if args.model in ("smollm2", "default") else None)
    target = target_record(model, args.model, file_sha256(gguf) if gguf else None)
    out_dir = Path(args.out_dir)
    work_dir = Path(args.work_dir) if args.work_dir else out_dir / ".work"
    remaining = args.budget_s
    for k, (name, method, cfg) in enumerate(jobs):
        share = remaining / (len(jobs) - k)
        settings = TrainSettings(budget_s=share, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                                 warmup_steps=args.warmup_steps, seed=args.seed, steady_fraction=args.steady_fraction,
                                 layout_extra_stages=args.layout_extra_stages,
                                 checkpoint_every_s=args.checkpoint_every_s)
        pdm = PipelineDraftModule(model, cfg, vocab, seed=args.seed)
        warm = _warm_start(pdm, out_dir / name, work_dir / name)
        t0 = time.perf_counter()
        summary = train(method, pdm, store, settings, work_dir / name, train_ids, progress=not args.no_progress)
        remaining = max(0.0, remaining - (time.perf_counter() - t0))
        val = _validate(method, pdm, store, hold, settings, step_loss)
        meta = {"target": target, "n": cfg.n if method != "chain" else None, "anchors": list(cfg.anchors),
                "tower_layers": cfg.tower_layers, "draft_vocab_size": cfg.draft_vocab_size, "dims": dims.to_dict(),
                "chain_steps": args.chain_steps if method == "chain" else None, "warm_started_from": warm,
                "training": {"settings": settings.to_dict(), "result": summary.to_dict(), "validation": val,
                             "device": str(model.device), "torch": torch.__version__,
                             "autocast": "bf16" if model.device.type == "cuda" else None},
                "data": {"file": ",".join(Path(f).name for f in data_files), "sequences": len(data), "tokens": data.num_tokens,
                         "holdout_sequences": len(hold), "provenance": data.provenance}}
        save_checkpoint(pdm, out_dir / name, method, meta)
        print(f"{name}: {summary.steps} steps in {summary.wall_s:.0f} s ({summary.stopped_by}); train loss "
              f"{summary.final_loss:.3f} top1 {summary.final_top1:.3f}; held-out loss {val['loss']:.3f} top1 {val['top1']:.3f}")
    return 0


def _checkpoint_vocab(out_dir: Path, prefix: str, size: int):
    """The draft vocabulary of existing checkpoints ``OUT_DIR/<prefix>-*`` when they have one of ``size`` ids
    (all drafters of one training share it), else None: continuing them keeps their heads' rows meaning the
    same tokens even when the data was generated again."""
    from safetensors import safe_open

    from ..draft import WEIGHTS_FILE

    for f in sorted(out_dir.glob(f"{prefix}-*/{WEIGHTS_FILE}")):
        try:
            with safe_open(str(f), framework="pt") as st:
                if "vocab_ids" in st.keys():
                    ids = st.get_tensor("vocab_ids")
                    if ids.numel() == size:
                        return ids.long()
        except Exception:  # an unreadable file is the warm start's to report; fall back to the data
            continue
    return None


def _warm_start(pdm, ckpt_dir: Path, state_dir: Path) -> dict | None:
    """A later call without the resume state (a fresh machine) continues from the saved bf16 checkpoint: same
    weights, fresh optimizer. A checkpoint that is a narrower version of the requested shape (smaller tower FFN
    and/or aggregation rank, all else equal) is widened so that it computes the same function
    (``reference.training.widen``). Returns what it started from (recorded in train.json), or None."""
    import json

    import torch

    from ..draft import PipelineDraftModule
    from ..training.checkpoints import TRAIN_META
    from ..training.widen import can_widen, widen_into

    if (state_dir / "state.pt").is_file() or not (ckpt_dir / TRAIN_META).is_file():
        return None
    old = PipelineDraftModule.load(ckpt_dir, pdm.target)
    if (old.vocab_ids is None) != (pdm.vocab_ids is None) or (
            old.vocab_ids is not None and not torch.equal(old.vocab_ids, pdm.vocab_ids)):
        print(f"warm start: {ckpt_dir.name} has another draft vocabulary: trained from scratch")
        return None
    widened = None
    if old.config == pdm.config:
        pdm.load_state_dict({k: v.to(pdm.state_dict()[k].dtype) for k, v in old.state_dict().items()})
    elif can_widen(old.config, pdm.config):
        widen_into(pdm, old)
        widened = {"tower_ffn": old.config.tower_ffn, "agg_rank": old.config.agg_rank}
        print(f"warm start: {ckpt_dir.name} widened from tower_ffn {old.config.tower_ffn}, agg_rank "
              f"{old.config.agg_rank} to {pdm.config.tower_ffn}, {pdm.config.agg_rank} (same function)")
    else:  # a wider or otherwise different checkpoint cannot be continued as this shape
        print(f"warm start: {ckpt_dir.name} has another shape (tower_ffn {old.config.tower_ffn}, agg_rank "
              f"{old.config.agg_rank}, ...) than asked for: trained from scratch")
        return None
    prev = json.loads((ckpt_dir / TRAIN_META).read_text())
    res = ((prev.get("training") or {}).get("result") or {})
    return {"steps": res.get("steps"), "wall_s": res.get("wall_s"), "previous": prev.get("warm_started_from"),
            **({"widened_from": widened} if widened else {})}


def _validate(method, pdm, store, hold, settings, step_loss) -> dict:
    """Mean KL and top-1 agreement on held-out sequences (SPD: the training mix of steady/warm-up layouts, at the
    drafter's own n even when it trained on a deeper pipeline's layouts)."""
    import dataclasses

    import torch

    settings = dataclasses.replace(settings, layout_extra_stages=0)

    if not hold:
        return {"loss": float("nan"), "top1": float("nan"), "queries": 0}
    tot_l = tot_t = tot_q = 0.0
    gen = torch.Generator().manual_seed(12345)
    pdm.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=pdm.device.type == "cuda"):
        for i in range(0, len(hold), settings.batch_size):
            loss, top1, q = step_loss(method, pdm, store, hold[i:i + settings.batch_size], settings, gen)
            tot_l, tot_t, tot_q = tot_l + float(loss) * q, tot_t + float(top1) * q, tot_q + q
    # loss: KL to the target over the draft vocabulary (+ the feature regression term for the chain head)
    return {"loss": tot_l / max(tot_q, 1), "top1": tot_t / max(tot_q, 1), "queries": int(tot_q)}
