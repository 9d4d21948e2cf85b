"""`spd eval-acceptance`: measure trained drafters' acceptance on the evaluation prompts (first turn, chat
template), batched over prompts (reference/training/evaluate.py), and write the versioned result file of
docs/acceptance-format.md. ``--markdown`` prints the docs/training.md tables (from ``--from FILE`` without
running anything). ``--cross-check K`` also runs the in-process engine on K prompts and fails (exit 1) if it
disagrees with the batched emulation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sim.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2", help="target: smollm2 (default), a .gguf path, an HF dir")
    p.add_argument("--draft", action="append", default=[], help="checkpoint directory (repeatable); a directory "
                   "holding several checkpoints (e.g. reference/checkpoints) adds all of them")
    p.add_argument("--datasets", default="mt_bench,gsm8k,humaneval", help="prompt sets or .jsonl paths")
    p.add_argument("--temperatures", default="0,1")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--limit", type=int, default=0, help="prompts per dataset (0 = all)")
    p.add_argument("--chain-steps", type=int, default=0, help="override the chain head's drafts per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-batch", type=int, default=80)
    p.add_argument("--max-mask-elems", type=int, default=1 << 28, help="bounds the scoring batch (GPU memory)")
    p.add_argument("--cross-check", type=int, default=0, help="prompts to cross-check against the in-process engine")
    p.add_argument("--out", default=None, help="result JSON (docs/acceptance-format.md)")
    p.add_argument("--from", dest="from_file", default=None, help="read a result file instead of measuring")
    p.add_argument("--markdown", action="store_true", help="print the markdown tables")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--no-progress", action="store_true")


def _checkpoint_dirs(paths: list[str]) -> list[Path]:
    from ..training.checkpoints import TRAIN_META

    out = []
    for p in paths:
        d = Path(p)
        if (d / TRAIN_META).is_file():
            out.append(d)
        elif d.is_dir() and any((c / TRAIN_META).is_file() for c in d.iterdir() if c.is_dir()):
            out.extend(sorted(c for c in d.iterdir() if (c / TRAIN_META).is_file()))
        else:
            raise InputError(f"{p}: not a draft checkpoint directory (no train.json) nor a folder of them")
    return out


def run(args: argparse.Namespace) -> int:
    if args.from_file:
        from ..training.results import FORMAT, markdown

        try:
            doc = json.loads(Path(args.from_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{args.from_file}: cannot read result file ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InputError(f"{args.from_file}: format: expected {FORMAT!r}")
        print(markdown(doc))
        return 0
    if not args.draft:
        raise InputError("--draft: give at least one checkpoint directory (or --from FILE)")
    try:
        temps = [float(x) for x in args.temperatures.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--temperatures: expected comma-separated numbers, got {args.temperatures!r}") from None
    if not temps or any(t < 0 for t in temps):
        raise InputError("--temperatures: need numbers >= 0")
    if args.max_new_tokens < 2 or args.limit < 0:
        raise InputError("--max-new-tokens must be >= 2 and --limit >= 0")
    import torch

    from sim.io import atomic_write_json

    from ..loaders import load_model
    from ..prompts import load_prompts
    from ..training.checkpoints import load_checkpoint
    from ..training.evaluate import Drafter, EvalPrompt, engine_crosscheck, evaluate, largest_stage
    from ..training.results import FORMAT, VERSION, by_dataset, chain_summary, markdown, pipeline_summary

    t0 = time.perf_counter()
    model, tok = load_model(args.model, args.device, args.dtype, max_seq_len=1024)
    if tok is None:
        raise InputError(f"model {args.model!r} has no tokenizer: prompts need one")
    eos = tuple(tok.eos_token_ids)
    L = model.config.num_layers
    prompts = []
    for ds in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        for p in load_prompts(ds, tok, max_seq_len=model.config.max_seq_len - 16, max_new_tokens=args.max_new_tokens,
                              limit=args.limit or None):
            prompts.append(EvalPrompt(p.source, p.question_id, p.token_ids))
    drafters, target_meta = [], None
    for d in _checkpoint_dirs(args.draft):
        pdm, meta = load_checkpoint(d, model)
        steps = args.chain_steps or meta.get("chain_steps") or 5
        drafters.append(Drafter(d.name, meta["method"], pdm, steps, meta))
        target_meta = target_meta or meta.get("target")
    results = []
    checks = []
    for T in temps:
        out = evaluate(model, drafters, prompts, max_new_tokens=args.max_new_tokens, temperature=T, seed=args.seed,
                       eos_ids=eos, gen_batch=args.gen_batch, max_mask_elems=args.max_mask_elems,
                       progress=not args.no_progress)
        for d in drafters:
            recs = []
            for o in out[d.name]:
                base = {"dataset": o.prompt.dataset, "question_id": o.prompt.question_id,
                        "prompt_len": len(o.prompt.prompt_ids), "tokens": o.tokens}
                if d.method == "chain":
                    base.update(rounds=o.run.rounds, drafted=o.run.drafted)
                    if o.teacher_forced is not None:
                        base.update(tf_accepted=o.teacher_forced[0], tf_starts=o.teacher_forced[1])
                else:
                    base.update(cycles=o.run.cycles, refill_rejects=o.run.refill_rejects,
                                accepts="".join("1" if a else "0" for a in o.run.accepts),
                                inflight="".join(str(min(m, 9)) for m in o.run.inflight))
                recs.append(base)
            entry = {"method": d.method, "draft": d.name, "temperature": T, "anchors": list(d.pdm.config.anchors),
                     "draft_layers": d.pdm.config.tower_layers, "draft_vocab_size": d.pdm.config.draft_vocab_size,
                     "training": (d.meta.get("training") or {}).get("result")}
            if d.method == "chain":
                entry["steps"] = d.steps
                entry["summary"] = by_dataset(recs, lambda r: chain_summary(r, d.steps, L, d.pdm.config.tower_layers))
            else:
                n = d.pdm.config.n
                entry["stages"] = n
                entry["summary"] = by_dataset(recs, lambda r, n=n, d=d: pipeline_summary(
                    r, n, L, largest_stage(L, n), d.pdm.config.tower_layers, d.method))
            entry["prompts"] = recs
            results.append(entry)
        if args.cross_check:
            for d in drafters:
                if d.method != "spd":
                    continue
                cc = engine_crosscheck(model, d.pdm, prompts[:args.cross_check], args.max_new_tokens, T, args.seed, eos)
                checks.append({"draft": d.name, "temperature": T, **cc.__dict__})
    doc = {"format": FORMAT, "version": VERSION, "target": target_meta,
           "settings": {"datasets": sorted({p.dataset for p in prompts}), "prompts": len(prompts),
                        "max_new_tokens": args.max_new_tokens, "temperatures": temps, "seed": args.seed,
                        "limit_per_dataset": args.limit or None, "device": str(model.device),
                        "dtype": str(model.dtype).replace("torch.", ""),
                        "paths": "target-generated per prompt, batched (greedy at T=0, sampled at T>0)",
                        "wall_s": round(time.perf_counter() - t0, 1)},
           "engine_cross_check": checks, "results": results}
    if args.out:
        atomic_write_json(args.out, doc, indent=None)
        print(f"wrote {args.out}: {len(results)} result(s) ({len(drafters)} draft(s) x {len(temps)} temperature(s)) "
              f"over {len(prompts)} prompt(s); `spd eval-acceptance --from {args.out}` prints the tables")
    if args.markdown or not args.out:
        print(markdown(doc))
    bad = [c for c in checks if not (c["tokens_equal"] and c["accepts_equal"] and c["cycles_equal"]
                                     and c["max_logit_diff"] < (1e-3 if model.dtype == torch.float32 else 0.15))]
    if bad:
        sys.stderr.write(f"eval-acceptance: engine cross-check failed: {bad}\n")
        return 1
    return 0
