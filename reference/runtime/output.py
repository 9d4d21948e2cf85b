"""Rank 0 writes the run directory: outputs.jsonl, trace.jsonl, trace.perfetto.json, summary.json (all atomic).

Speed accounting: a generation's decode phase starts when the prefill token is committed and ends when the
last token is committed; it produced N - 1 tokens. ``decode_tokens_per_s`` pools them over prompts (total
decode tokens / total decode time); prefill is reported apart.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from sim.io import atomic_write_json, atomic_write_text

from .config import RunConfig
from .controller import PromptResult
from .tracing import build_trace_lines

SUMMARY_FORMAT = "spd-run-summary"
SUMMARY_VERSION = 1


def summarize(cfg: RunConfig, results: list[PromptResult], lossless: bool | None) -> dict:
    n = cfg.stages
    decode_tokens = sum(len(r.tokens) - 1 for r in results)
    decode_s = sum(r.t_end_ns - r.t_first_ns for r in results) / 1e9
    prefill_s = sum(r.t_first_ns - r.t_start_ns for r in results) / 1e9
    out = {"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION, "method": cfg.method, "n_stages": n,
           "model": cfg.model, "dtype": cfg.resolved_dtype(), "device": cfg.device, "placement": cfg.placement,
           "draft": cfg.draft if cfg.method == "spd" else None, "alpha": cfg.alpha if cfg.draft == "replay" else None,
           "temperature": cfg.temperature, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
           "trace_level": cfg.trace, "prompts": len(results),
           "tokens_committed": sum(len(r.tokens) for r in results), "decode_tokens": decode_tokens,
           "decode_s": decode_s, "prefill_s": prefill_s,
           "decode_tokens_per_s": decode_tokens / decode_s if decode_s > 0 else None,
           "decode_ms_per_token": 1e3 * decode_s / decode_tokens if decode_tokens else None,
           "cycles": sum(r.cycles for r in results)}
    if cfg.method == "spd":
        drafts = sum(len(r.accepts) for r in results)
        ratios = [n * len(r.tokens) / r.cycles for r in results if r.cycles > 0]
        out.update({"refill_rejects": sum(r.refill_rejects for r in results),
                    "rejects": sum(r.rejects for r in results), "verified_drafts": drafts,
                    "marginal_accept_rate": sum(sum(r.accepts) for r in results) / drafts if drafts else None,
                    # SPEC.md 2: the published "theoretical" is the mean over prompts of n*N_i/K_i.
                    "l_acc_mean_of_ratios": sum(ratios) / len(ratios) if ratios else None,
                    # wall-clock cycles: K plus the wasted ones of speculative control
                    "wasted_cycles": sum(r.wasted_cycles for r in results),
                    "cycle_ms_mean": (1e3 * decode_s / sum(r.cycles + r.wasted_cycles for r in results)
                                      if results else None),
                    "lossless_vs_reference": lossless})
    return out


def write_run(run_dir: Path, cfg: RunConfig, header: dict, clocks: list[dict], per_rank: list[dict],
              epoch_ns: int, results: list[PromptResult], prompts: list[dict], decode_text,
              lossless: bool | None) -> dict:
    """``per_rank[r]``: that rank's {"events", "cycles", "prompts"}; records of warm-up / reference passes
    (prompt < 0) are dropped here."""
    for part in per_rank:
        part["events"] = [e for e in part["events"] if e["prompt"] >= 0]
        part["cycles"] = [c for c in part.get("cycles", []) if c["prompt"] >= 0]
    per_rank[0]["prompts"] = []
    outputs = []
    for r in results:
        p = prompts[r.prompt]
        n_committed = len(r.tokens)
        rec = {"prompt": r.prompt, "question_id": p.get("question_id"), "prompt_tokens": len(p["ids"]),
               "N": n_committed, "K": r.cycles, "W": r.wasted_cycles, "R": r.refill_rejects, "rejects": r.rejects,
               "accepts": [int(a) for a in r.accepts], "stop_reason": r.stop_reason,
               "prefill_ns": r.t_first_ns - r.t_start_ns, "decode_ns": r.t_end_ns - r.t_first_ns,
               "t_start_ns": r.t_start_ns - epoch_ns, "t_first_ns": r.t_first_ns - epoch_ns,
               "t_end_ns": r.t_end_ns - epoch_ns}
        per_rank[0]["prompts"].append(rec)
        outputs.append({"prompt": r.prompt, "question_id": p.get("question_id"), "prompt_ids": p["ids"],
                        "tokens": r.tokens, "text": decode_text(r.tokens), "stop_reason": r.stop_reason})
    summary = summarize(cfg, results, lossless)
    lines = build_trace_lines(header, clocks, per_rank, epoch_ns)
    lines.append(json.dumps({"type": "summary", **summary}))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "outputs.jsonl", "".join(json.dumps(o) + "\n" for o in outputs))
    atomic_write_text(run_dir / "trace.jsonl", "\n".join(lines) + "\n")
    from sim.traces import load_trace, to_chrome_trace  # torch-free; validates what we just wrote

    trace = load_trace(run_dir)
    atomic_write_json(run_dir / "trace.perfetto.json", to_chrome_trace(trace), indent=None)
    summary["written_unix_s"] = time.time()
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def summary_line(s: dict) -> str:
    line = (f"{s['method']} n={s['n_stages']}: {_fmt(s['decode_tokens_per_s'], '.2f')} tok/s decode "
            f"({_fmt(s['decode_ms_per_token'], '.3f')} ms/token) over {s['prompts']} prompt(s), "
            f"{s['decode_tokens']} tokens")
    if s["method"] == "spd":
        line += (f"; acceptance {_fmt(s['marginal_accept_rate'], '.3f')} (marginal, {s['verified_drafts']} drafts), "
                 f"L_acc {_fmt(s['l_acc_mean_of_ratios'], '.3f')}, K={s['cycles']}, R={s['refill_rejects']}"
                 + (f", wasted W={s['wasted_cycles']} (speculative control)" if s.get("wasted_cycles") else ""))
        if s.get("lossless_vs_reference") is not None:
            line += f", lossless vs AR reference: {s['lossless_vs_reference']}"
    return line
