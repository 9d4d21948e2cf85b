"""The acceptance result file (docs/acceptance-format.md, ``spd-acceptance`` version 1): summaries per dataset
and overall, and the raw per-prompt sequences; plus the markdown table of docs/training.md. Torch-free."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sim import closed_form as cf

FORMAT, VERSION = "spd-acceptance", 1


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def pipeline_summary(records: list[dict[str, Any]], n: int, num_layers: int, largest_stage: int, draft_layers: int,
                     method: str) -> dict[str, Any]:
    """SPD/PPSD numbers over prompt records (docs/acceptance-format.md defines every field)."""
    runs = [r for r in records if r["cycles"] > 0]  # a generation ending on its prefill token runs no cycle
    acc = sum(r["accepts"].count("1") for r in runs)
    ver = sum(len(r["accepts"]) for r in runs)
    rejects = ver - acc
    N = sum(r["tokens"] for r in runs)
    K = sum(r["cycles"] for r in runs)
    ratios = [r["tokens"] / r["cycles"] for r in runs]
    l_acc = _mean([n * x for x in ratios])
    if method == "spd":  # PDM hidden behind the stage forward: a cycle costs the largest stage
        speed = _mean([x * num_layers / max(largest_stage, draft_layers) for x in ratios])
    else:  # PPSD: the draft runs after each step, serially
        speed = _mean([x * num_layers / (largest_stage + draft_layers) for x in ratios])
    inserted = K - rejects  # every cycle proposes a draft; a reject cycle's proposal is discarded
    return {
        "prompts": len(runs), "verified_drafts": ver, "accepted_drafts": acc,
        "alpha_pooled": acc / ver if ver else None,
        "alpha_from_l_acc": float(cf.spd_alpha_from_accept_length(l_acc, n)) if l_acc else None,
        "marginal_accept_rate": acc / inserted if inserted else None,
        "tokens": N, "cycles": K, "refill_rejects": sum(r["refill_rejects"] for r in runs),
        "tokens_per_cycle_pooled": N / K if K else None,
        "tokens_per_cycle_mean_of_ratios": _mean(ratios),
        "l_acc_mean_of_ratios": l_acc,
        "theoretical_speedup_mean_of_ratios": speed,
    }


def chain_summary(records: list[dict[str, Any]], steps: int, num_layers: int, draft_layers: int) -> dict[str, Any]:
    """EAGLE-style numbers: conditional per-position acceptance (pooled), tau (tokens per round, pooled)."""
    reached = np.zeros(steps, dtype=np.int64)
    accepted = np.zeros(steps, dtype=np.int64)
    rounds = tokens = 0
    for r in records:
        for a, dr in zip(r["rounds"], r["drafted"]):
            for k in range(min(a + 1, dr)):  # draft k+1 was verified (all before it accepted)
                reached[k] += 1
            accepted[:a] += 1
            rounds += 1
        tokens += r["tokens"] - 1  # the prefill token is not produced by a round
    per_pos = [float(accepted[k] / reached[k]) if reached[k] else None for k in range(steps)]
    tau = tokens / rounds if rounds else None
    # every start on the committed path (records written since session 8; older ones lack the keys)
    tf = [r for r in records if "tf_starts" in r]
    per_pos_tf = starts_tf = None
    if tf:
        tf_acc = np.sum([r["tf_accepted"] for r in tf], axis=0)
        tf_n = np.sum([r["tf_starts"] for r in tf], axis=0)
        per_pos_tf = [float(tf_acc[k] / tf_n[k]) if tf_n[k] else None for k in range(steps)]
        starts_tf = [int(x) for x in tf_n]
    return {
        "prompts": len(records), "rounds": rounds, "tokens_after_prefill": tokens,
        "per_position_alpha": per_pos, "per_position_verified": reached.tolist(),
        "per_position_accepted": accepted.tolist(), "tau_pooled": tau,
        "per_position_alpha_teacher_forced": per_pos_tf,
        "per_position_starts_teacher_forced": starts_tf,
        "theoretical_speedup": float(cf.eagle3_theoretical_speedup(tau, steps, draft_layers, num_layers)) if tau else None,
    }


def by_dataset(records: list[dict[str, Any]], summarize) -> dict[str, Any]:
    out = {}
    for ds in sorted({r["dataset"] for r in records}):
        out[ds] = summarize([r for r in records if r["dataset"] == ds])
    out["overall"] = summarize(records)
    return out


# -------------------------------------------------------------------------------------------- markdown
def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    """The docs/training.md tables from a result file."""
    lines: list[str] = []
    res = doc.get("results", [])
    temps = sorted({r["temperature"] for r in res})
    datasets = sorted({d for r in res for d in r["summary"] if d != "overall"}) + ["overall"]
    for T in temps:
        rows = [r for r in res if r["temperature"] == T]
        lines.append(f"### T = {T:g}\n")
        lines.append("SPD / PPSD: per-draft alpha (pooled) / L_acc (mean of n·N/K) / theoretical speedup\n")
        lines.append("| method | n | drafter | " + " | ".join(datasets) + " |")
        lines.append("|---|---|---|" + "---|" * len(datasets))
        pipeline = (r for r in rows if r["method"] in ("spd", "ppsd"))
        for r in sorted(pipeline, key=lambda r: (r["method"], r["stages"], r.get("draft", ""))):
            cells = []
            for d in datasets:
                s = r["summary"].get(d, {})
                cells.append(f"{_f(s.get('alpha_pooled'))} / {_f(s.get('l_acc_mean_of_ratios'), 2)} / "
                             f"{_f(s.get('theoretical_speedup_mean_of_ratios'), 2)}x")
            lines.append(f"| {r['method'].upper()} | {r['stages']} | {r.get('draft', '-')} | " + " | ".join(cells) + " |")
        for r in (r for r in rows if r["method"] == "chain"):
            lines.append("")
            lines.append(f"EAGLE-style chain head ({r['steps']} drafts per round, 1 layer): conditional acceptance "
                         "per position, tau, theoretical speedup\n")
            lines.append("| dataset | " + " | ".join(f"pos {k + 1}" for k in range(r["steps"])) + " | tau | speedup |")
            lines.append("|---|" + "---|" * (r["steps"] + 2))
            for d in datasets:
                s = r["summary"].get(d, {})
                pp = s.get("per_position_alpha") or [None] * r["steps"]
                lines.append(f"| {d} | " + " | ".join(_f(x) for x in pp)
                             + f" | {_f(s.get('tau_pooled'), 2)} | {_f(s.get('theoretical_speedup'), 2)}x |")
            # how many drafts each position's acceptance rests on: deep positions are reached rarely
            nv = r["summary"].get("overall", {}).get("per_position_verified") or []
            if nv:
                lines.append("| drafts verified (overall) | " + " | ".join(str(x) for x in nv) + " | | |")
            if r["summary"].get("overall", {}).get("per_position_alpha_teacher_forced"):
                lines.append("")
                lines.append("Chain head, teacher-forced acceptance per position (draft k from every start on the "
                             "committed path, own features from step 2; EAGLE's k-alpha)\n")
                lines.append("| dataset | " + " | ".join(f"pos {k + 1}" for k in range(r["steps"])) + " |")
                lines.append("|---|" + "---|" * r["steps"])
                for d in datasets:
                    pp = r["summary"].get(d, {}).get("per_position_alpha_teacher_forced") or [None] * r["steps"]
                    lines.append(f"| {d} | " + " | ".join(_f(x) for x in pp) + " |")
        lines.append("")
    return "\n".join(lines)
