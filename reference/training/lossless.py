"""Losslessness of SPD with trained PDMs on the evaluation prompts, with the in-process engine:
``python -m reference.training.lossless --model M --draft DIR [--draft DIR ...] --out lossless.json``.

For every prompt: AR greedy (``reference.model.generate_greedy``, batch 1) once, then SPD
(``reference.local_engine.LocalEngine.generate_spd``) with each PDM; the committed tokens must be identical.
Batch-1 decoding is launch-bound, so prompts are sharded over ``--workers`` processes sharing the device (spread over
all visible GPUs when no ``--device`` is given).
``--budget-s`` bounds the wall clock: workers stop taking prompts when it is spent, and the report says how
many (n, prompt) pairs were checked. ``--resume FILE`` skips pairs a previous report already checked.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sim.cli import run_reporting_input_errors
from sim.errors import InputError


def _worker(rank: int, args: dict[str, Any], jobs: list[tuple[int, str, Any, list[int]]], queue) -> None:
    import torch

    from ..local_engine import LocalEngine
    from ..loaders import load_model
    from ..model import generate_greedy
    from .checkpoints import load_checkpoint

    torch.set_num_threads(1)
    device = args["device"]
    if device is None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        device = f"cuda:{rank % torch.cuda.device_count()}"  # workers spread over every visible GPU
        torch.cuda.set_device(device)
    model, tok = load_model(args["model"], device, args["dtype"], max_seq_len=1024)
    eos = tuple(tok.eos_token_ids) if tok is not None else ()
    pdms = [load_checkpoint(d, model)[0] for d in args["drafts"]]
    engines = {p.config.n: LocalEngine(model, p.config.n) for p in pdms}
    for idx, ds, qid, ids in jobs:
        if time.time() > args["deadline"]:
            break
        t0 = time.perf_counter()
        ref = generate_greedy(model, ids, args["max_new_tokens"], eos)
        for d, pdm in zip(args["drafts"], pdms):
            run = engines[pdm.config.n].generate_spd(ids, pdm, args["max_new_tokens"], eos)
            res = run.result
            queue.put({"draft": Path(d).name, "n": pdm.config.n, "dataset": ds, "question_id": qid,
                       "equal": res.tokens == ref, "tokens": len(ref), "cycles": res.cycles,
                       "accepted": sum(res.accepts), "verified": len(res.accepts),
                       "first_mismatch": next((i for i, (a, b) in enumerate(zip(res.tokens, ref)) if a != b),
                                              None if len(res.tokens) == len(ref) else min(len(res.tokens), len(ref)))})
        queue.put({"done_prompt": idx, "rank": rank, "s": time.perf_counter() - t0})
    queue.put({"worker_done": rank})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.training.lossless", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--draft", action="append", required=True, help="PDM checkpoint directory (repeatable)")
    p.add_argument("--datasets", default="mt_bench,gsm8k,humaneval")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=0.0)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--resume", default=None, help="a previous report: its checked pairs are kept and skipped")
    p.add_argument("--out", required=True)
    return run_reporting_input_errors("lossless", _run, p.parse_args(argv))


def _run(a: argparse.Namespace) -> int:
    import torch.multiprocessing as mp

    from sim.io import atomic_write_json

    from ..loaders import load_model
    from ..prompts import load_prompts

    t_start = time.time()
    _, tok = load_model(a.model, "cpu", "fp32", max_seq_len=1024)  # the tokenizer (workers load their own copy)
    if tok is None:
        raise InputError(f"model {a.model!r} has no tokenizer: prompts need one")
    prompts = []
    for ds in [d.strip() for d in a.datasets.split(",") if d.strip()]:
        prompts += load_prompts(ds, tok, max_seq_len=1024 - 16, max_new_tokens=a.max_new_tokens, limit=a.limit or None)
    old = []
    if a.resume and Path(a.resume).is_file():
        old = json.loads(Path(a.resume).read_text()).get("checks", [])
    done = {(c["draft"], c["dataset"], str(c["question_id"])) for c in old}
    names = [Path(d).name for d in a.draft]
    todo = [(i, pr.source, pr.question_id, list(pr.token_ids)) for i, pr in enumerate(prompts)
            if any((nm, pr.source, str(pr.question_id)) not in done for nm in names)]
    deadline = t_start + a.budget_s if a.budget_s else float("inf")
    args = {"model": a.model, "device": a.device, "dtype": a.dtype, "drafts": a.draft,
            "max_new_tokens": a.max_new_tokens, "deadline": deadline}
    W = max(1, min(a.workers, len(todo)))
    shards = [todo[w::W] for w in range(W)]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(w, args, shards[w], q)) for w in range(W)]
    for pr in procs:
        pr.start()
    checks, finished = list(old), 0
    while finished < W:
        msg = q.get()
        if "worker_done" in msg:
            finished += 1
        elif "draft" in msg:
            checks.append(msg)
    for pr in procs:
        pr.join()
    by = {}
    for c in checks:
        s = by.setdefault(c["draft"], {"n": c["n"], "checked": 0, "equal": 0, "mismatches": []})
        s["checked"] += 1
        s["equal"] += int(c["equal"])
        if not c["equal"]:
            s["mismatches"].append({k: c[k] for k in ("dataset", "question_id", "first_mismatch")})
    report = {"format": "spd-lossless/1", "model": a.model, "prompts_total": len(prompts),
              "max_new_tokens": a.max_new_tokens, "workers": W, "wall_s": round(time.time() - t_start, 1),
              "summary": by, "checks": checks}
    atomic_write_json(a.out, report, indent=None)
    for name, s in sorted(by.items()):
        print(f"{name}: {s['equal']}/{s['checked']} of {len(prompts)} prompts identical to AR greedy")
    return 0 if all(s["equal"] == s["checked"] for s in by.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
