"""The validation report: a text table, markdown, and a predicted-vs-measured scatter as plain SVG
(no plotting dependency: the figure is a few dozen SVG elements)."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from .validate import RunPrediction, configuration_errors_line, error_summary


def _f(v, fmt=".2f") -> str:
    return "-" if v is None else format(v, fmt)


def _columns(cols: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A fixed-width text table: the first column left-aligned, the rest right-aligned, a rule under the header."""
    w = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(r))  # noqa: E731
    return [line(cols), line(tuple("-" * x for x in w))] + [line(r) for r in rows]


def table(preds: list[RunPrediction]) -> str:
    cols = ("run", "meas tok/s", "sim tok/s", "cf tok/s", "err tok/s", "meas x", "sim x", "cf x", "err x")
    rows = [(p.label, _f(p.measured_tokens_per_s, ".1f"), _f(p.predicted_tokens_per_s, ".1f"),
             _f(p.closed_form_tokens_per_s, ".1f"), _f(p.rel_error_tokens_per_s and 100 * p.rel_error_tokens_per_s, "+.1f") + "%",
             _f(p.measured_speedup, ".3f"), _f(p.predicted_speedup, ".3f"), _f(p.closed_form_speedup, ".3f"),
             (_f(100 * p.rel_error_speedup, "+.1f") + "%") if p.rel_error_speedup is not None else "-") for p in preds]
    s = error_summary(preds)
    out = _columns(cols, rows)
    med, mx = s["median_abs_rel_error"], s["max_abs_rel_error"]
    out.append(f"{s['predicted']}/{s['runs']} runs predicted; |relative error| (speedup where an AR baseline was measured, "
               f"else tokens/s): median {_f(med and 100 * med, '.1f')}%, max {_f(mx and 100 * mx, '.1f')}%")
    return "\n".join(out)


def configuration_table(conf: dict) -> str:
    """``validate.configuration_errors``' rows: which configuration's mean is off, and how far its own repeats
    spread (tokens/s, (max - min) / mean)."""
    cols = ("configuration", "trace", "runs", "unit", "meas mean", "pred mean", "err", "repeat spread")
    rows = [(r["label"], r["trace_level"], str(r["runs"]), r["unit"], f"{r['measured_mean']:.3f}",
             f"{r['predicted_mean']:.3f}", "-" if r["rel_error"] is None else f"{100 * r['rel_error']:+.1f}%",
             "-" if r["spread"] is None else f"{100 * r['spread']:.1f}%") for r in conf.get("rows", [])]
    return "\n".join(_columns(cols, rows))


def scatter_svg(preds: list[RunPrediction], size: int = 420) -> str:
    pts = [(p.measured_speedup, p.predicted_speedup, p.label) if p.rel_error_speedup is not None
           else (p.measured_tokens_per_s, p.predicted_tokens_per_s, p.label) for p in preds
           if p.predicted_tokens_per_s is not None]
    use_speedup = any(p.rel_error_speedup is not None for p in preds)
    pts = [(m, q, lab) for m, q, lab in pts if m and q]
    lo = min([min(m, q) for m, q, _ in pts] + [1e9]) * 0.9 if pts else 0.0
    hi = max([max(m, q) for m, q, _ in pts] + [1e-9]) * 1.1 if pts else 1.0
    pad = 50
    sc = lambda v: pad + (v - lo) / (hi - lo) * (size - 2 * pad) if hi > lo else pad  # noqa: E731
    unit = "speedup over AR" if use_speedup else "tokens/s"
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" font-size="11">',
          f'<rect width="{size}" height="{size}" fill="white"/>',
          f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{pad}" stroke="#999" stroke-dasharray="4"/>',
          f'<rect x="{pad}" y="{pad}" width="{size - 2 * pad}" height="{size - 2 * pad}" fill="none" stroke="black"/>',
          f'<text x="{size / 2}" y="{size - 12}" text-anchor="middle">measured {unit}</text>',
          f'<text x="14" y="{size / 2}" text-anchor="middle" transform="rotate(-90 14 {size / 2})">predicted {unit}</text>',
          f'<text x="{pad}" y="{size - pad + 14}">{lo:.3g}</text><text x="{size - pad}" y="{size - pad + 14}" text-anchor="end">{hi:.3g}</text>',
          f'<text x="{pad - 4}" y="{size - pad}" text-anchor="end">{lo:.3g}</text><text x="{pad - 4}" y="{pad + 8}" text-anchor="end">{hi:.3g}</text>']
    for m, q, lab in pts:
        el.append(f'<circle cx="{sc(m):.1f}" cy="{size - sc(q):.1f}" r="4" fill="#1f77b4"><title>{html.escape(lab)}: '
                  f'measured {m:.3g}, predicted {q:.3g}</title></circle>')
    el.append("</svg>")
    return "\n".join(el) + "\n"


def write_report(out_dir: str | Path, preds: list[RunPrediction], command: str, max_error: float | None,
                 profile: str | None = None, repeats: str | None = None, configurations: dict | None = None,
                 bound: tuple[str, dict] | None = None) -> Path:
    """``profile``: the path of the one profile every run was predicted from (``spd validate --profile``);
    None when each run was predicted from a profile of the other configurations (leave-one-configuration-out).
    ``repeats``: the set's noise floor (``validate.repeat_spread_line``), where it has repeated configurations;
    ``configurations``: ``validate.configuration_errors``; ``bound``: what ``max_error`` applies to and its error
    summary (default: every run, ``error_summary(preds)``)."""
    out = Path(out_dir)
    s = error_summary(preds)
    conf_line = configuration_errors_line(configurations) if configurations else None
    bound_on, bounded = bound or ("every run", s)
    if profile:
        kind, how = "forecast from a given profile", f"Each run is predicted by the profile `{profile}`"
    else:
        kind, how = ("leave-one-configuration-out",
                     "Each run is predicted by a profile fitted on the runs of every *other* configuration")
    md = [f"# Validation: predicted vs measured ({kind})", "", f"Command: `{command}`", "",
          how + ", with its own accept/reject sequence replayed (simulator; `cf` = closed form at the run's accept "
          "fraction). Speedups are over the measured / predicted single-device AR of the same model shape.", "",
          "```", table(preds), "```", "", "![predicted vs measured](scatter.svg)", ""]
    if repeats:
        md += [f"**Noise floor**: {repeats}.", ""]
    if conf_line:
        md += [f"**Per configuration**: {conf_line}.", "", "```", configuration_table(configurations), "```", ""]
    if max_error is not None:
        md.append(f"Error bound `--max-error {max_error}` on {bound_on}: "
                  + ("met" if bounded["max_abs_rel_error"] is not None and bounded["max_abs_rel_error"] <= max_error
                     else "EXCEEDED"))
    notes = sorted({n for p in preds for n in p.notes})
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    atomic_write_text(out / "scatter.svg", scatter_svg(preds))
    atomic_write_json(out / "validation.json", {"summary": s, "per_configuration": configurations, "max_error": max_error,
                                                "max_error_on": bound_on if max_error is not None else None, "runs": [p.to_json() for p in preds]})
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    return out
