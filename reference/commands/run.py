"""``spd run``: AR, AR through the pipeline, or SPD for real over torch.distributed.

Locally it validates everything it can, writes ``RUNDIR/config.json`` (the run config plus the tokenised
prompts) and spawns the processes itself (n+1 ranks; on CUDA the ranks placed on one GPU share a process, one
thread each; on CPU the controller hosts stage 1). Under ``torchrun`` (RANK and WORLD_SIZE set) each process
is started by torchrun: ``torchrun --nproc-per-node 2 -m sim.cli run --method spd --stages 2 ...`` (one
process per GPU used, or n+1 with ``--process-per-rank``; across machines with ``--nnodes``); every process
validates the same arguments and process 0 (the controller's) writes the run directory.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from sim.errors import InputError
from sim.io import atomic_write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("ar", "ar_pipeline", "spd"), default="spd")
    p.add_argument("--stages", type=int, default=None, help="pipeline stages n (default 2; 1 for ar)")
    p.add_argument("--model", default="smollm2",
                   help="smollm2 | random:SHAPE (smollm2-135m, qwen3-0.6b, llama-3.2-1b, qwen3-4b, llama-3.1-8b, "
                        "custom:{json}) | checkpoint DIR | FILE.gguf")
    p.add_argument("--prompts", required=True, help="JSONL: turns / prompt / prompt_ids per line")
    p.add_argument("--limit", type=int, default=None, help="first K prompts only")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--placement", default=None,
                   help="device index per rank, controller first then stages, e.g. 0,0,1 "
                        "(default: controller with stage 1 on GPU 0, stages spread over the GPUs)")
    p.add_argument("--draft", choices=("pdm", "replay"), default="pdm")
    p.add_argument("--alpha", type=float, default=1.0, help="replay draft: per-draft acceptance")
    p.add_argument("--draft-checkpoint", default=None, help="trained PDM directory (pdm.json + pdm.safetensors)")
    p.add_argument("--draft-layers", type=int, default=2, help="L_s, tower layers of an untrained PDM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--trace", default="full", choices=("full", "cycle"),
                   help="full: every op on every rank (syncs the GPU per op); cycle: per-cycle records only")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="eager one-token steps and draft forwards on GPU (default: both replayed from CUDA graphs)")
    p.add_argument("--max-seq-len", type=int, default=None,
                   help="KV-cache capacity (default: what the run needs, longest prompt + max new tokens + a margin, "
                        "rounded up to 128 and at most the model's: attention reads every slot)")
    p.add_argument("--kernels", default="auto", choices=("auto", "reference", "fused", "compiled"),
                   help="one-token step kernels on every rank: reference (unfused), fused (one-kernel RMSNorm, "
                        "mask built once), compiled (fused + torch.compile, CUDA only); auto: fused on CUDA, "
                        "reference on CPU")
    p.add_argument("--process-per-rank", action="store_true",
                   help="every rank its own process (default on CUDA: the ranks placed on one GPU share a process, "
                        "each on its own thread and CUDA stream)")
    p.add_argument("--draft-vocab", type=int, default=0,
                   help="untrained/replay PDM: draft head over K token ids, as trained drafts have (0 = full)")
    p.add_argument("--speculative-control", action="store_true",
                   help="SPD: broadcast the next cycle's GO before verifying this one, so the stages never wait "
                        "for rank 0's head and verify; a reject then wastes one cycle more (docs/executor.md)")
    p.add_argument("--stop-at-eos", action="store_true", help="stop at the model's EOS (default: exactly M tokens)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up generations")
    p.add_argument("--check-lossless", action="store_true",
                   help="T=0: first run AR greedy through the same pipeline and kernels (untimed) and report "
                        "whether SPD's output is identical (the replay draft always does this)")
    p.add_argument("--stage-split", default=None, help="explicit layers per stage, e.g. 8,7")
    p.add_argument("--pin-cpus", action="store_true",
                   help="pin each process to its own equal block of the CPUs this launch may use (Linux; local "
                        "launches only: under torchrun bind with the launcher's tools)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="bound on any wait for a peer once running")


def config_from_args(args: argparse.Namespace) -> "RunConfig":
    from reference.runtime.config import RunConfig, parse_placement

    stages = args.stages if args.stages is not None else (1 if args.method == "ar" else 2)
    split = None
    if args.stage_split:
        try:
            split = [int(x) for x in args.stage_split.split(",")]
        except ValueError:
            raise InputError(f"--stage-split: expected comma-separated layer counts, got {args.stage_split!r}") from None
    return RunConfig(method=args.method, stages=stages, model=args.model, prompts=args.prompts,
                     out=str(Path(args.out).resolve()), max_new_tokens=args.max_new_tokens, limit=args.limit,
                     temperature=args.temperature, device=args.device, placement=parse_placement(args.placement),
                     draft=args.draft, alpha=args.alpha, draft_checkpoint=args.draft_checkpoint,
                     draft_layers=args.draft_layers, seed=args.seed, dtype=args.dtype, trace=args.trace,
                     cuda_graphs=not args.no_cuda_graphs, timeout_s=args.timeout_s, max_seq_len=args.max_seq_len,
                     ignore_eos=not args.stop_at_eos, warmup=args.warmup, check_lossless=args.check_lossless, stage_split=split,
                     process_per_rank=args.process_per_rank, kernels=args.kernels, draft_vocab=args.draft_vocab,
                     speculative_control=args.speculative_control, pin_cpus=args.pin_cpus)


def prepare(args: argparse.Namespace):
    """Validated config and tokenised prompts (raises InputError); imports torch."""
    from reference.runtime.config import default_placement, validate
    from reference.runtime.inputs import check_against_model, check_devices, describe_model, read_prompts

    cfg = config_from_args(args)
    validate(cfg)
    if cfg.device == "cuda" and cfg.placement is None:
        import torch

        cfg.placement = default_placement(cfg.method, cfg.stages, torch.cuda.device_count())
    check_devices(cfg)
    model_config, tok = describe_model(cfg.model, cfg.max_seq_len)
    prompts = read_prompts(cfg.prompts, tok, cfg.limit)
    if cfg.max_seq_len is None and prompts:
        # Attention over the static cache reads every slot: size it to the run, not to the model's 2048+.
        # The margin does not depend on the method (n-1 drafts in flight, warm-up): AR and SPD runs of the same
        # prompts get the same cache, so their attention costs the same.
        need = max(len(p["ids"]) for p in prompts) + cfg.max_new_tokens + 64
        cfg.max_seq_len = min(model_config.max_seq_len, -(-need // 128) * 128)
    check_against_model(cfg, model_config, prompts)
    return cfg, prompts


def run(args: argparse.Namespace) -> int:
    from reference.runtime.launch import cpu_blocks, spawn_local, torchrun_env
    from reference.runtime.worker import run_rank

    cfg, prompts = prepare(args)
    env = torchrun_env()
    if env is not None:  # under torchrun: be that rank
        if cfg.pin_cpus:
            raise InputError("--pin-cpus: local launches only; under torchrun bind each rank with the launcher's tools")
        return run_rank(cfg, env[0], env[1], prompts)  # errors already reported as one line (one per process)
    cpus = cpu_blocks(cfg.process_count) if cfg.pin_cpus else None  # before anything is written
    out = Path(cfg.out)
    config_path = atomic_write_json(out / "config.json", {"config": dataclasses.asdict(cfg), "prompts": prompts})
    # One intra-op thread per rank on CPU: n+1 ranks share few cores, and spinning OpenMP pools of several
    # threads per process slow a one-token step down 10-30x on a 2-core machine.
    threads = 1 if cfg.device == "cpu" else None
    res = spawn_local(config_path, cfg.process_count, out / "logs", threads_per_rank=threads,
                      labels=cfg.process_labels(), cpu_sets=cpus)
    if res.returncode == 2:
        raise InputError(res.message)
    if res.returncode != 0:
        sys.stderr.write(f"spd run: error: {res.message}\n")
        return 1
    import json

    from reference.runtime.output import summary_line

    print(summary_line(json.loads((out / "summary.json").read_text())))
    print(f"run directory: {out} (summary.json, outputs.jsonl, trace.jsonl, trace.perfetto.json)")
    return 0


def _main(argv: list[str] | None = None) -> int:
    """``python -m reference.commands.run ...``: the same command without the other subcommands' imports
    (GPU machines may lack the simulator's dependencies)."""
    from sim.cli import _Parser, run_reporting_input_errors

    parser = _Parser(prog="spd run", description="run AR / AR-pipeline / SPD for real on torch.distributed")
    add_arguments(parser)
    return run_reporting_input_errors("spd run", run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(_main())
