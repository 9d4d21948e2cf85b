"""Single-device AR decode latency (ms/token) of random-weight real shapes: eager vs CUDA-graph one-token step,
against the HBM roofline (bytes of weights read per token / HBM bandwidth).

Runs from a plain checkout (torch 2.11 + Python 3.12 on the GPU machines, nothing installed):

    PYTHONPATH=. python scripts/gpu/bench_ar.py --out "$OUT"                      # all named shapes, CUDA bf16
    PYTHONPATH=. python scripts/gpu/bench_ar.py --shape qwen3-4b --tokens 256 --out "$OUT"
    PYTHONPATH=. python scripts/gpu/bench_ar.py --device cpu --shape 'custom:{...}' --tokens 8   # CPU check
    PYTHONPATH=. python scripts/gpu/bench_ar.py --shape qwen3-4b --variants all --tokens 128 --out "$OUT"

``--variants all|NAME,NAME``: one shape (the first --shape), the CUDA-graph step timed under each candidate fix
(``VARIANTS`` below: cache length, SDPA backend, length-limited flash attention, fused norms, float mask, bf16
head, torch.compile) plus a breakdown (one layer / all layers / head / host loop, CUDA events over graph
replays) and a kernel profile; prints one table and writes ``bench_ar_variants.json`` (after every variant).

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
from reference.shapes import hbm_tb_s  # noqa: E402
from sim.errors import InputError  # noqa: E402
from sim.io import atomic_write_json  # noqa: E402

DEFAULT_SHAPES = ["qwen3-4b", "llama-3.1-8b", "qwen3-0.6b", "smollm2-135m"]


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
    ap.add_argument("--variants", default=None, help="'all' or comma-separated names of VARIANTS: time the "
                                                     "first shape's step under each candidate fix")
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
        if args.variants:
            return run_variants(args, env)
        rows = []
        for shape in args.shape:
            rows.append(bench_shape(shape, args))
            print_row(rows[-1])
    except InputError as exc:
        print(f"bench_ar: error: {exc}", file=sys.stderr)
        return 2
    result = {"benchmark": "ar_decode", "version": 1, "environment": env, "hbm_tb_s": args.hbm_tb_s,
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "variants")}, "rows": rows}
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


# --- variants: candidate fixes for the AR step, each timed in one call ------------------------------------
# name -> (what it tests, settings). Settings: msl (KV slots; None = the bench default), backend (SDPA backend at
# capture), opts (Transformer.set_decode_options), compile (torch.compile mode of the whole step, or
# "layers:<mode>" for each Block), cuda (needs CUDA).
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("the bench default (CUDA graph, boolean mask, fp32 logits)", {}),
    "msl2048": ("static cache of 2048 slots (the runtime default): attention scans every slot", {"msl": 2048}),
    "sdpa_math": ("SDPA math backend forced", {"backend": "MATH"}),
    "sdpa_efficient": ("SDPA memory-efficient backend forced", {"backend": "EFFICIENT_ATTENTION", "cuda": True}),
    "sdpa_cudnn": ("SDPA cuDNN backend forced", {"backend": "CUDNN_ATTENTION", "cuda": True}),
    "float_mask": ("additive bf16 mask built once per step (no bool->float per layer)",
                   {"opts": {"float_mask": True}}),
    "flash_seqused": ("flash varlen, keys limited to position+1 on the device, no mask",
                      {"opts": {"attn_impl": "flash_seqused"}, "cuda": True}),
    "flash_seqused_2048": ("flash_seqused with 2048 slots (cost should not grow with the cache)",
                           {"msl": 2048, "opts": {"attn_impl": "flash_seqused"}, "cuda": True}),
    "fused_norm": ("RMSNorm as one F.rms_norm in bf16 (4 norms/layer for Qwen3: ~12 fewer kernels)",
                   {"opts": {"fused_norm": True}}),
    "head_bf16": ("LM head logits left in bf16 (no fp32 cast of 152k logits)", {"opts": {"logits_fp32": False}}),
    "cheap_all": ("fused_norm + float_mask + head_bf16", {"opts": {"fused_norm": True, "float_mask": True,
                                                                    "logits_fp32": False}}),
    "cheap_all_flash": ("fused_norm + flash_seqused + head_bf16",
                        {"opts": {"fused_norm": True, "attn_impl": "flash_seqused", "logits_fp32": False},
                         "cuda": True}),
    "compile_layers": ("torch.compile(default) of each Block, inside our CUDA graph",
                       {"compile": "layers:default", "cuda": True}),
    "compile_step": ("torch.compile(max-autotune-no-cudagraphs) of the whole step, inside our CUDA graph",
                     {"compile": "max-autotune-no-cudagraphs", "cuda": True}),
}


class _CompiledStep(OneTokenStep):
    """OneTokenStep whose body is torch.compile'd (compiled during the warm-up runs, then graph-captured)."""

    def __init__(self, *a, compile_mode: str, **kw) -> None:
        self._fn = torch.compile(self._eager_run, mode=compile_mode, dynamic=False)
        super().__init__(*a, **kw)

    def _eager_run(self):
        return OneTokenStep._run(self)

    def _run(self):
        return self._fn()


def _sdpa_ctx(backend: str | None):
    import contextlib
    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel([getattr(SDPBackend, backend)])


def _decode(model: Transformer, prompt: torch.Tensor, settings: dict, warmup: int, tokens: int
            ) -> tuple[list[float], list[int], dict]:
    """The bench's greedy loop (host reads each token) with a variant's step; returns times, tokens, extras."""
    full = model.stage(0, model.config.num_layers)
    cache = full.new_cache(1)
    cuda = model.device.type == "cuda"
    comp = settings.get("compile")
    layer_compiled = []
    with torch.inference_mode():
        logits = model(prompt, torch.arange(prompt.shape[1]), cache)
    x = logits[:, -1:].argmax(-1)
    t0 = time.perf_counter()
    with _sdpa_ctx(settings.get("backend")):
        if comp and comp.startswith("layers:"):
            for layer in model.layers:
                layer.compile(mode=comp.split(":", 1)[1], dynamic=False)
                layer_compiled.append(layer)
            step = OneTokenStep(full, cache, embed=True, head=True, use_graph=cuda)
        elif comp:
            step = _CompiledStep(full, cache, embed=True, head=True, use_graph=cuda, compile_mode=comp)
        else:
            step = OneTokenStep(full, cache, embed=True, head=True, use_graph=cuda)
    extras = {"build_s": time.perf_counter() - t0}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    out, times_ms, pos = [int(x)], [], prompt.shape[1]
    try:
        for i in range(warmup + tokens):
            t0 = time.perf_counter()
            logits, _ = step.step(x, pos)
            x = logits[:, -1:].argmax(-1)
            tok = int(x)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                times_ms.append(dt)
            out.append(tok)
            pos += 1
        if cuda:  # the same graph replayed back to back, no host read: the GPU time of one step
            extras["replay_only_ms"] = _replay_ms(step.graph.replay, 50)
    finally:
        for layer in layer_compiled:  # back to eager for the next variant
            layer._compiled_call_impl = None
    return times_ms, out, extras


def _replay_ms(fn, n: int) -> float:
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


@torch.inference_mode()
def _breakdown(model: Transformer, pos: int) -> dict:
    """CUDA-event times of graph replays: one layer, all layers (with embedding), head (norm + LM head + argmax)."""
    c = model.config
    res = {}
    one = model.stage(0, 1)
    st1 = OneTokenStep(one, one.new_cache(1))
    st1.static_in.normal_()
    st1.static_pos.fill_(pos)
    res["one_layer_us"] = 1e3 * _replay_ms(st1.graph.replay, 200)
    full = model.stage(0, c.num_layers)
    stl = OneTokenStep(full, full.new_cache(1), embed=True)
    stl.static_pos.fill_(pos)
    res["layers_ms"] = _replay_ms(stl.graph.replay, 50)
    h = torch.randn(1, 1, c.hidden_size, device=model.device, dtype=model.dtype)
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model.final_logits(h)[:, -1].argmax(-1)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(g):
        model.final_logits(h)[:, -1].argmax(-1)
    res["head_ms"] = _replay_ms(g.replay, 100)
    res["layers_x_one_ms"] = res["one_layer_us"] * c.num_layers / 1e3
    return res


@torch.inference_mode()
def _kernel_profile(model: Transformer, top: int = 15) -> dict:
    """Kernels of one graphed step (torch.profiler over 5 replays): count per step and the top kernels by time."""
    from torch.profiler import ProfilerActivity, profile
    full = model.stage(0, model.config.num_layers)
    step = OneTokenStep(full, full.new_cache(1), embed=True, head=True)
    step.static_pos.fill_(100)
    _replay_ms(step.graph.replay, 3)
    n = 5
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            step.graph.replay()
        torch.cuda.synchronize()
    rows = []
    for ev in prof.key_averages():
        t = getattr(ev, "self_device_time_total", None) or getattr(ev, "self_cuda_time_total", 0)
        if t and ev.count:
            rows.append({"kernel": ev.key[:90], "per_step": ev.count / n, "us_per_step": t / n})
    rows.sort(key=lambda r: -r["us_per_step"])
    return {"kernels_per_step": sum(r["per_step"] for r in rows),
            "kernel_us_per_step": sum(r["us_per_step"] for r in rows), "top": rows[:top]}


def run_variants(args: argparse.Namespace, env: dict) -> int:
    names = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise InputError(f"unknown variant(s) {', '.join(bad)}; known: {', '.join(VARIANTS)}")
    if "base" in names:
        names.remove("base")
    names.insert(0, "base")
    shape = args.shape[0]
    cuda = args.device.startswith("cuda")
    default_msl = -(-(args.max_seq_len or (args.prompt_len + args.warmup + args.tokens + 16)) // 64) * 64
    result = {"benchmark": "ar_decode_variants", "version": 1, "environment": env, "hbm_tb_s": args.hbm_tb_s,
              "shape": shape, "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": []}
    models: dict[int, Transformer] = {}
    base_tokens = None
    roof_ms = None

    def save() -> None:
        if args.out:
            atomic_write_json(Path(args.out) / "bench_ar_variants.json", result)

    print(f"{'variant':<20} {'ms/token':>9} {'replay ms':>9} {'% roof':>7} {'same tok':>8} {'build s':>8}  what")
    for name in names:
        what, st = VARIANTS[name]
        row = {"variant": name, "what": what}
        result["rows"].append(row)
        if st.get("cuda") and not cuda:
            row["skipped"] = "needs CUDA"
            print(f"{name:<20} {'skipped (needs CUDA)':>36}", flush=True)
            save()
            continue
        msl = st.get("msl") or default_msl
        try:
            if msl not in models:
                for m in list(models):  # one model at a time on the device
                    del models[m]
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
                models[msl], _ = load_model(f"random:{shape}", args.device, args.dtype, max_seq_len=msl,
                                            seed=args.seed)
            model = models[msl]
            if roof_ms is None and cuda:
                roof_ms = bytes_read_per_token(model)["weight_bytes"] / (args.hbm_tb_s * 1e12) * 1e3
                result["roofline_ms"] = roof_ms
                result["weight_bytes"] = bytes_read_per_token(model)["weight_bytes"]
            g = torch.Generator().manual_seed(args.seed)
            prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_len), generator=g).to(model.device)
            model.set_decode_options(**st.get("opts", {}))
            try:
                times, toks, extras = _decode(model, prompt, st, args.warmup, args.tokens)
            finally:
                model.set_decode_options()
            row.update(summarize(times), max_seq_len=msl, **extras)
            if base_tokens is None:
                base_tokens = toks
            row["tokens_match"] = toks == base_tokens
            if roof_ms:
                row["fraction_of_roofline"] = roof_ms / row["median_ms"]
            pct = f"{100 * row['fraction_of_roofline']:6.1f}%" if roof_ms else f"{'-':>7}"
            rep = f"{row['replay_only_ms']:9.3f}" if "replay_only_ms" in row else f"{'-':>9}"
            print(f"{name:<20} {row['median_ms']:9.3f} {rep} {pct} {str(row['tokens_match']):>8} "
                  f"{row['build_s']:8.1f}  {what}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a variant that fails is a result, not the end of the run
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            print(f"{name:<20} FAILED {row['error'][:150]}", flush=True)
            torch._dynamo.reset() if hasattr(torch, "_dynamo") else None
        save()
    if cuda:
        model = models.get(default_msl) or load_model(f"random:{shape}", args.device, args.dtype,
                                                      max_seq_len=default_msl, seed=args.seed)[0]
        for key, fn in (("breakdown", lambda: _breakdown(model, args.prompt_len + 64)),
                        ("kernel_profile", lambda: _kernel_profile(model))):
            try:
                result[key] = fn()
            except Exception as exc:  # noqa: BLE001
                result[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            save()
        b = result["breakdown"]
        if "error" not in b:
            print(f"breakdown: one layer {b['one_layer_us']:.1f} us (x{model.config.num_layers} = "
                  f"{b['layers_x_one_ms']:.3f} ms), all layers {b['layers_ms']:.3f} ms, head {b['head_ms']:.3f} ms, "
                  f"base replay {result['rows'][0].get('replay_only_ms', float('nan')):.3f} ms, "
                  f"base loop {result['rows'][0].get('median_ms', float('nan')):.3f} ms")
        else:
            print(f"breakdown: {b['error']}")
        kp = result["kernel_profile"]
        if "error" not in kp:
            print(f"kernels per step {kp['kernels_per_step']:.0f}, kernel time {kp['kernel_us_per_step']:.0f} us/step")
            for r in kp["top"]:
                print(f"  {r['us_per_step']:8.1f} us {r['per_step']:6.1f}x  {r['kernel']}")
        else:
            print(f"kernel_profile: {kp['error']}")
    if args.out:
        print(f"wrote {Path(args.out) / 'bench_ar_variants.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
