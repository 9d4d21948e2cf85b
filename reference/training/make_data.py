"""Generate the offline training data: ``python -m reference.training.make_data --model M --out data.safetensors``.

Steps (docs/training.md): (1) self-instruct: the target writes instructions from topic x kind meta-prompts
(sampled, T=0.9); (2) template and package-docstring prompts; (3) overlap filter against every turn of the
evaluation prompts (word 8-grams); (4) the target answers every kept prompt twice, greedy and sampled (T=1),
``--max-new-tokens`` each, batched; (5) responses sharing a word 13-gram with an evaluation prompt are dropped;
(6) tokens + provenance are written atomically. ``--budget-s`` stops answering early (seeded order, so a
smaller budget gives a prefix of the same data).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Sequence

from sim.cli import run_reporting_input_errors
from sim.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2", help="target: smollm2 (default), a .gguf path, an HF dir, random:<shape>")
    p.add_argument("--out", required=True, help="output .safetensors path (a .json provenance file is written beside it)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--self-instruct", type=int, default=4, help="instructions per (topic, kind) meta-prompt")
    p.add_argument("--doc-prompts", type=int, default=600, help="package-docstring prompts at most")
    p.add_argument("--max-prompts", type=int, default=0, help="cap on kept prompts (0 = all)")
    p.add_argument("--topics", type=int, default=0, help="use only the first K topics (0 = all; smoke tests)")
    p.add_argument("--gen-batch", type=int, default=256)
    p.add_argument("--budget-s", type=float, default=0.0, help="stop answering after this many seconds (0 = none)")
    p.add_argument("--shard", default="0/1", help="I/K: make only the I-th of K disjoint parts of the prompt set "
                   "(one per GPU; train-draft takes the parts as --data A,B)")
    p.add_argument("--prompts-dir", default=None, help="evaluation prompts to check overlap against (default: shared)")
    p.add_argument("--no-progress", action="store_true")


def _doc_roots() -> list[Path]:
    import importlib.util

    roots = []
    for name in ("numpy", "scipy", "tqdm", "jinja2", "packaging", "safetensors", "hypothesis", "simpy"):
        try:
            spec = importlib.util.find_spec(name)  # locates the package; does not import it
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            roots.append(Path(list(spec.submodule_search_locations)[0]))
    return roots


def run(args: argparse.Namespace) -> int:
    from ..loaders import load_model
    from ..prompts import encode_prompt, prompts_dir
    from .checkpoints import file_sha256
    from .data import NgramIndex, TrainingData, clean_instruction, eval_prompt_texts, package_doc_prompts
    from .generate import generate_batch
    from .topics import META_PROMPTS, TEMPLATES, TOPICS

    if args.max_new_tokens < 2:
        raise InputError("--max-new-tokens must be >= 2")
    shard, shards = _parse_shard(args.shard)
    t0 = time.perf_counter()
    progress = not args.no_progress
    model, tok = load_model(args.model, args.device, args.dtype, max_seq_len=1024)
    if tok is None:
        raise InputError(f"model {args.model!r} has no tokenizer: training data needs text prompts")
    eos = tuple(tok.eos_token_ids)
    ctx = model.config.max_seq_len
    rng = random.Random(args.seed)
    eval_texts = eval_prompt_texts(Path(args.prompts_dir) if args.prompts_dir else prompts_dir())
    idx8, idx13 = NgramIndex(eval_texts, 8), NgramIndex(eval_texts, 13)

    # (1) self-instruct
    topics = TOPICS[:args.topics] if args.topics else TOPICS
    metas = [(kind, t, META_PROMPTS[kind].format(topic=t)) for kind in sorted(META_PROMPTS) for t in topics]
    # Sharding splits every prompt list by index, so the K parts are disjoint and together make the unsharded set
    # (self-instruct replies are sampled per shard, with the shard in the seed).
    meta_ids = ([encode_prompt(tok, m, ctx, 64) for _, _, m in metas] * args.self_instruct)[shard::shards]
    kinds = ([k for k, _, _ in metas] * args.self_instruct)[shard::shards]
    candidates: list[tuple[str, str]] = []
    for b in range(0, len(meta_ids), args.gen_batch):
        outs = generate_batch(model, meta_ids[b:b + args.gen_batch], 64, temperature=0.9,
                              seed=args.seed * 101 + b + 1_000_003 * shard, eos_ids=eos)
        for k, o in zip(kinds[b:b + args.gen_batch], outs):
            text = clean_instruction(tok.decode(o, skip_special_tokens=True))
            if text:
                candidates.append((f"self-instruct:{k}", text))
    # (2) templates and package docstrings
    candidates += [("template", t.format(topic=topic)) for t in TEMPLATES for topic in topics][shard::shards]
    candidates += [("package-docs", p) for p in package_doc_prompts(_doc_roots(), args.doc_prompts)][shard::shards]
    # (3) overlap filter and de-duplication
    seen, kept, dropped = set(), [], 0
    for src, text in candidates:
        if text in seen:
            continue
        seen.add(text)
        if idx8.hits(text):
            dropped += 1
            continue
        kept.append((src, text))
    rng.shuffle(kept)
    if args.max_prompts:
        kept = kept[:args.max_prompts]
    prompts = []
    for src, text in kept:
        try:
            prompts.append((src, encode_prompt(tok, text, ctx, args.max_new_tokens)))
        except InputError:
            continue  # longer than the context allows
    # (4) answers, greedy and sampled, in seeded order
    seqs, plens, sampled, sources = [], [], [], []
    resp_dropped = 0
    jobs = [(i, temp) for i in range(len(prompts)) for temp in (0.0, 1.0)]
    order = sorted(range(len(jobs)), key=lambda j: (jobs[j][1], len(prompts[jobs[j][0]][1])))
    stopped_early = False
    for b in range(0, len(order), args.gen_batch):
        if args.budget_s and time.perf_counter() - t0 > args.budget_s:
            stopped_early = True
            break
        chunk = [jobs[j] for j in order[b:b + args.gen_batch]]
        temp = chunk[0][1]
        same = [c for c in chunk if c[1] == temp]
        rest = [c for c in chunk if c[1] != temp]
        for group in (same, rest):
            if not group:
                continue
            outs = generate_batch(model, [prompts[i][1] for i, _ in group], args.max_new_tokens,
                                  temperature=group[0][1], seed=args.seed * 7 + b + 1_000_003 * shard, eos_ids=eos)
            for (i, t), o in zip(group, outs):
                if len(o) < 2:
                    continue
                if idx13.hits(tok.decode(o, skip_special_tokens=True)):  # (5)
                    resp_dropped += 1
                    continue
                seqs.append(list(prompts[i][1]) + list(o))
                plens.append(len(prompts[i][1]))
                sampled.append(t > 0)
                sources.append(prompts[i][0])
        if progress:
            print(f"answers: {len(seqs)} sequences, {sum(map(len, seqs))} tokens, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not seqs:
        raise InputError("no training sequences were generated (budget too small?)")
    gguf = Path(args.model) if args.model.endswith(".gguf") else None
    if args.model in ("smollm2", "default"):
        from ..loaders import default_gguf_path

        gguf = default_gguf_path()
    by_src: dict[str, int] = {}
    for s in sources:
        by_src[s] = by_src.get(s, 0) + 1
    provenance = {
        "generator": "python -m reference.training.make_data " + " ".join(sys.argv[1:]),
        "target": model.config.name, "gguf_sha256": file_sha256(gguf) if gguf else None,
        "seed": args.seed, "shard": f"{shard}/{shards}", "max_new_tokens": args.max_new_tokens, "sampling": "each prompt answered greedy and at T=1",
        "prompt_sources": {"self-instruct": "target-written from reference/training/topics.py meta-prompts (T=0.9)",
                           "template": "reference/training/topics.py TEMPLATES x TOPICS",
                           "package-docs": "docstrings of installed packages (parsed with ast): "
                                           + ", ".join(p.name for p in _doc_roots())},
        "sequences_by_source": by_src,
        "overlap_check": {"reference": "every turn of data/prompts/*.jsonl", "prompts_rule": "drop on any shared "
                          "lower-cased word 8-gram", "prompts_checked": len(seen), "prompts_dropped": dropped,
                          "responses_rule": "drop on any shared word 13-gram", "responses_dropped": resp_dropped},
        "stopped_early_by_budget": stopped_early, "wall_s": round(time.perf_counter() - t0, 1),
        "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
    }
    data = TrainingData(seqs, plens, sampled, provenance)
    data.save(args.out)
    print(f"wrote {args.out}: {len(data)} sequences, {data.num_tokens} tokens; overlap: {dropped} of {len(seen)} "
          f"prompts and {resp_dropped} responses dropped")
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard: expected I/K such as 0/2, got {text!r}") from None
    if not 0 <= i < k:
        raise InputError(f"--shard: need 0 <= I < K, got {text!r}")
    return i, k


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reference.training.make_data", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run_reporting_input_errors("make_data", run, p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
