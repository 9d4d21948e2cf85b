"""Single-device AR decode latency (ms/token) of random-weight real shapes: eager vs CUDA-graph one-token step,
against the HBM roofline (bytes of weights read per token / HBM bandwidth).

Runs from a plain checkout (torch 2.11 + Python 3.12 on the GPU machines, nothing installed):

    PYTHONPATH=. python scripts/gpu/bench_ar.py --out "$OUT"                      # all named shapes, CUDA bf16
    PYTHONPATH=. python scripts/gpu/bench_ar.py --shape qwen3-4b --tokens 256 --out "$OUT"
    PYTHONPATH=. python scripts/gpu/bench_ar.py --device cpu --shape 'custom:{...}' --tokens 8   # CPU check

Each shape: seeded random weights, a random prompt of --prompt-len tokens prefilled, then greedy one-token
steps (the realistic loop: the host reads every token, as generate_greedy does). ms/token is the median of
--tokens steps after --warmup steps. The eager and graph runs start from the same prompt and must produce the
same tokens (same kernels); ``tokens_match`` records it. Writes ``bench_ar.json`` under --out.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, when PYTHONPATH is not set

from reference.loaders import load_model, resolve_device_dtype  # noqa: E402
from reference.model import OneTokenStep, Transformer  # noqa: E402
from sim.errors import InputError  # noqa: E402
from sim.io import atomic_write_json  # noqa: E402

DEFAULT_SHAPES = ["qwen3-4b", "llama-3.1-8b", "qwen3-0.6b", "smollm2-135m"]
_HBM_TB_S = {"H200": 4.8, "H100 PCIe": 2.0, "H100": 3.35}  # first match in the device name wins


def hbm_tb_s(device_name: str) -> float:
    for key, tb in _HBM_TB_S.items():
        if key in device_name:
            return tb
    return 3.35


def bytes_read_per_token(model: Transformer) -> dict[str, int]:
    """Weights every one-token step reads (the embedding table contributes one row unless it is the tied head)
    and the K/V bytes the static-cache attention reads (all max_seq_len slots, masked)."""
    c = model.config
    elt = model.dtype.itemsize
    params = {id(p): p for p in model.parameters()}  # tied head counted once
    total = sum(p.numel() for p in params.values()) * elt
    emb = c.vocab_size * c.hidden_size * elt
    weights = total if c.tie_word_embeddings else total - emb + c.hidden_size * elt
    kv = 2 * c.num_layers * c.num_kv_heads * c.max_seq_len * c.head_dim * elt
    return {"weight_bytes": weights, "kv_cache_bytes": kv}


@torch.inference_mode()
def time_decode(model: Transformer, prompt: torch.Tensor, use_graph: bool, warmup: int, tokens: int
                ) -> tuple[list[float], list[int]]:
    """Per-token wall times (ms) and the generated tokens of a greedy one-token-step loop."""
    full = model.stage(0, model.config.num_layers)
    cache = full.new_cache(1)
    logits = model(prompt, torch.arange(prompt.shape[1]), cache)
    step = OneTokenStep(full, cache, embed=True, head=True, use_graph=use_graph)
    x = logits[:, -1:].argmax(-1)  # [1, 1] on device
    out, times_ms = [int(x)], []
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    sync()
    pos = prompt.shape[1]
    for i in range(warmup + tokens):
        t0 = time.perf_counter()
        logits, _ = step.step(x, pos)
        x = logits[:, -1:].argmax(-1)
        tok = int(x)  # the host reads the token (device sync), as every real decode loop does
        dt = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times_ms.append(dt)
        out.append(tok)
        pos += 1
    return times_ms, out


def summarize(times_ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times_ms, n=10) if len(times_ms) >= 2 else [times_ms[0]] * 9
    return {"median_ms": statistics.median(times_ms), "p10_ms": q[0], "p90_ms": q[-1], "n_tokens": len(times_ms)}


def bench_shape(shape: str, args: argparse.Namespace) -> dict:
    max_seq_len = args.max_seq_len or (args.prompt_len + args.warmup + args.tokens + 16)
    max_seq_len = -(-max_seq_len // 64) * 64  # a multiple of 64: aligned masks for the fused attention kernels
    model, _ = load_model(f"random:{shape}", args.device, args.dtype, max_seq_len=max_seq_len, seed=args.seed)
    c = model.config
    g = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, c.vocab_size, (1, args.prompt_len), generator=g).to(model.device)
    row: dict = {"shape": c.name, "num_layers": c.num_layers, "hidden_size": c.hidden_size,
                 "num_params": c.num_params, "dtype": str(model.dtype).replace("torch.", ""),
                 "max_seq_len": c.max_seq_len, "prompt_len": args.prompt_len, **bytes_read_per_token(model)}
    modes = ["eager"] + (["graph"] if model.device.type == "cuda" else [])
    tokens = {}
    for mode in modes:
        times, toks = time_decode(model, prompt, mode == "graph", args.warmup, args.tokens)
        row[mode] = summarize(times)
        tokens[mode] = toks
    row["tokens_match"] = all(t == tokens["eager"] for t in tokens.values())
    if model.device.type == "cuda":
        roof_ms = row["weight_bytes"] / (args.hbm_tb_s * 1e12) * 1e3
        row["roofline_ms"] = roof_ms
        for mode in modes:
            row[mode]["fraction_of_roofline"] = roof_ms / row[mode]["median_ms"]
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(cuda=torch.version.cuda, device_name=props.name, total_memory_gib=props.total_memory / 2**30,
                   device_count=torch.cuda.device_count())
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="AR ms/token: eager vs CUDA graph vs HBM roofline")
    ap.add_argument("--shape", action="append", help=f"named shape or custom:{{json}}; repeatable "
                                                     f"(default: {', '.join(DEFAULT_SHAPES)})")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None, help="default bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=256, help="timed tokens per mode")
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--max-seq-len", type=int, default=None, help="KV-cache slots (default: just enough)")
    ap.add_argument("--hbm-tb-s", type=float, default=None, help="HBM bandwidth (default: from the device name)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="directory for bench_ar.json")
    args = ap.parse_args(argv)
    args.shape = args.shape or DEFAULT_SHAPES
    for name in ("prompt_len", "tokens"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        raise InputError("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        resolve_device_dtype(args.device, args.dtype)  # bad device/dtype: one-line error before any CUDA call
        env = environment(args.device)
        if args.hbm_tb_s is None and args.device.startswith("cuda"):
            args.hbm_tb_s = hbm_tb_s(env["device_name"])
        rows = []
        for shape in args.shape:
            rows.append(bench_shape(shape, args))
            print_row(rows[-1])
    except InputError as exc:
        print(f"bench_ar: error: {exc}", file=sys.stderr)
        return 2
    result = {"benchmark": "ar_decode", "version": 1, "environment": env, "hbm_tb_s": args.hbm_tb_s,
              "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows}
    if args.out:
        path = atomic_write_json(Path(args.out) / "bench_ar.json", result)
        print(f"wrote {path}")
    else:
        print(json.dumps(result, indent=1))
    return 0


def print_row(r: dict) -> None:
    if not getattr(print_row, "header", False):
        print(f"{'shape':<28} {'GB read':>8} {'eager ms':>9} {'graph ms':>9} {'roofline ms':>11} "
              f"{'eager %':>8} {'graph %':>8} {'same tokens':>11}")
        print_row.header = True  # type: ignore[attr-defined]

    def pct(mode: str) -> str:
        f = r.get(mode, {}).get("fraction_of_roofline")
        return f"{100 * f:7.1f}%" if f is not None else f"{'-':>8}"

    graph = f"{r['graph']['median_ms']:9.3f}" if "graph" in r else f"{'-':>9}"
    roof = f"{r['roofline_ms']:11.3f}" if "roofline_ms" in r else f"{'-':>11}"
    print(f"{r['shape']:<28} {r['weight_bytes'] / 1e9:8.3f} {r['eager']['median_ms']:9.3f} {graph} {roof} "
          f"{pct('eager')} {pct('graph')} {str(r['tokens_match']):>11}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
