"""Executor traces for the Calibration page (no Streamlit): load a trace set or uploaded trace files
through the shared loaders (`sim.traces.load_trace`, `sim.calibration.extract.measure_trace`) and
compare what was measured with what the package predicts.

* **Timing validation** (`validation_frame`): `sim.calibration.validate.validate_runs`, the same
  leave-one-configuration-out prediction as `spd validate`: each run's tokens/s and speedup over the AR
  run of the same shape, predicted by a profile fitted on the runs of every other configuration (the
  run's own accept/reject sequence replayed through the simulator). Only `--trace full` runs carry the
  per-op events a fit needs; `--trace cycle` runs are predicted, never fitted on.
* **Acceptance accounting** (`measured_frame`), per SPD run: the measured equivalent accept length
  n·N/K (mean over prompts) against `sim.closed_form.spd_accept_length_finite` at the run's measured
  per-draft alpha and token count: checks that the executor's cycles follow K = N + n - 2 + (n-1)R.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sim.calibration.extract import RunMeasurement, measure_trace
from sim.calibration.profile import environment_mismatch, load_profile
from sim.calibration.validate import (configuration_errors, configuration_errors_line, error_summary, repeat_spread,
                                      repeat_spread_line, validate_runs)
from sim.closed_form import spd_accept_length_finite
from sim.errors import InputError
from sim.traces import TRACE_FILES, Trace, find_trace_file, load_trace

from .charts import COLORS, layout


def trace_sets(root: str | Path) -> dict[str, Path]:
    """Folders under ``root`` that hold run directories (each with a trace.jsonl[.xz|.gz]): name -> folder."""
    root = Path(root)
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(find_trace_file(r) for r in d.iterdir() if r.is_dir()) or find_trace_file(d):
            out[d.name] = d
    return out


Run = tuple[Trace, RunMeasurement]  # the raw trace (its cycle counts K, level) and the calibration samples


def trace_level(tr: Trace) -> str:
    return str(tr.header.get("trace_level") or "full")


def _measure(tr: Trace) -> RunMeasurement:
    """Cycle-level traces are accepted (``require_full=False``): they lack the per-op events a fit needs,
    so `validate_runs` only predicts them (``RunMeasurement.fittable``), never fits on them."""
    return measure_trace(tr, require_full=False)


def _read(path: Path, name: str | None = None) -> Run:
    """A trace.jsonl, plain or compressed (recognised by content); errors name ``name`` or the path."""
    shown = name or str(path)
    tr = load_trace(path, shown)
    run = _measure(tr)
    run.path = shown
    return tr, run


def load_folder(folder: str | Path) -> list[Run]:
    folder = Path(folder)
    files = [f for f in (find_trace_file(r) for r in sorted(folder.iterdir()) if r.is_dir()) if f] if folder.is_dir() else []
    if find_trace_file(folder):
        files = [find_trace_file(folder)]
    if not files:
        raise InputError(f"{folder}: no run directories with a {' / '.join(TRACE_FILES)} inside")
    return [_read(f) for f in files]


def load_uploaded(name: str, data: bytes) -> Run:
    """One uploaded trace.jsonl (or .gz); errors name the uploaded file, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="spd-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        return _read(path, name)


def _run_name(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.name in TRACE_FILES else path


FITTED = "left out of the fit"
PREDICTED_ONLY = "predicted only (cycle-level pipeline trace)"


FORECAST = "forecast from the profile"


def validation_frame(runs: list[Run], seed: int = 0, profile: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Measured vs predicted tokens/s and speedup, one row per run, and the error summary: exactly
    `validate_runs` on the set (leave one configuration out; cycle-level runs are predicted from the
    fittable runs of the other configurations, never fitted), with the repeat spread and the error of each
    configuration's mean as `spd validate` prints them. ``profile``: a profile file that predicts every run
    instead (`spd validate --profile`), e.g. a set measured on other GPUs or another host."""
    ms = [m for _, m in runs]
    prof = load_profile(profile) if profile else None
    roles = [FORECAST if prof else FITTED if m.fittable else PREDICTED_ONLY for m in ms]
    validated = validate_runs(ms, prof, seed=seed)
    preds = list(zip(roles, validated))

    def pct(v: float | None) -> float:
        return 100.0 * v if v is not None else np.nan

    rows = []
    for role, p in preds:
        rows.append({
            "run": _run_name(p.path), "label": p.label, "role": role, "method": p.method, "stages": p.n,
            "measured_tokens_per_s": p.measured_tokens_per_s,
            "predicted_tokens_per_s": p.predicted_tokens_per_s if p.predicted_tokens_per_s is not None else np.nan,
            "error_tokens_per_s_pct": pct(p.rel_error_tokens_per_s),
            "measured_speedup": p.measured_speedup if p.measured_speedup is not None else np.nan,
            "predicted_speedup": p.predicted_speedup if p.predicted_speedup is not None else np.nan,
            "error_speedup_pct": pct(p.rel_error_speedup),
            "closed_form_speedup": p.closed_form_speedup if p.closed_form_speedup is not None else np.nan,
            "trained_on_runs": p.trained_on,
            "notes": "; ".join(p.notes),
        })
    summary = error_summary([p for _, p in preds])
    summary["repeats"] = repeat_spread_line(repeat_spread(ms))  # the set's noise floor (None: nothing repeated)
    conf = configuration_errors(ms, validated)
    summary["configurations"] = configuration_errors_line(conf)  # None: no repeats
    # each configuration's mean over its repeats, errors and spreads in %; None: nothing repeated
    summary["configuration_table"] = pd.DataFrame(conf["rows"]).assign(
        rel_error=lambda d: 100 * d["rel_error"].astype(float), spread=lambda d: 100 * d["spread"].astype(float)
    ) if conf["repeated"] else None
    # what differs between the profile's machine and the traces' (torch, CUDA, driver, device names)
    summary["profile_mismatch"] = environment_mismatch(prof.environment, ms[0].environment) if prof and ms else []
    return pd.DataFrame(rows), summary


def measured_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: what was measured and, for SPD, the closed form's accept length at the measured alpha.

    Measured accept length = mean over prompts of n·N_i/K_i with K_i the cycles the executor counted;
    predicted = the finite-length closed form at the run's accept fraction and the same N_i.
    """
    ar_tps = {m.shape.key: m.tokens_per_s for _, m in runs if m.method == "ar"}
    rows = []
    for tr, m in runs:
        row = {"run": _run_name(m.path), "label": m.label, "method": m.method,
               "stages": m.n, "decoded_tokens": m.decode_tokens, "tokens_per_s": m.tokens_per_s,
               "speedup_vs_ar": m.tokens_per_s / ar_tps[m.shape.key] if m.shape.key in ar_tps else np.nan,
               "alpha_measured": np.nan, "accept_length_measured": np.nan, "accept_length_predicted": np.nan}
        verdicts = [a for pr in tr.prompts for a in pr.accepts]
        usable = [pr for pr in tr.prompts if pr.K > 0 and pr.N >= 3]
        if m.method == "spd" and verdicts and usable:
            alpha = float(np.mean(verdicts))
            row.update(alpha_measured=alpha,
                       accept_length_measured=float(np.mean([m.n * pr.N / pr.K for pr in usable])),
                       accept_length_predicted=float(np.mean([spd_accept_length_finite(alpha, m.n, pr.N) for pr in usable])))
        rows.append(row)
    df = pd.DataFrame(rows)
    df["accept_length_error_pct"] = 100.0 * (df["accept_length_predicted"] - df["accept_length_measured"]) / df["accept_length_measured"]
    return df


def scatter_figure(df: pd.DataFrame) -> dict:
    """Measured vs predicted accept length (SPD runs); the diagonal is a perfect prediction."""
    d = df.dropna(subset=["accept_length_measured", "accept_length_predicted"])
    lo = float(min(d["accept_length_measured"].min(), d["accept_length_predicted"].min())) - 0.1 if len(d) else 0.9
    hi = float(max(d["accept_length_measured"].max(), d["accept_length_predicted"].max())) + 0.1 if len(d) else 2.1
    return {"data": [
        {"type": "scatter", "mode": "lines", "x": [lo, hi], "y": [lo, hi], "name": "perfect prediction",
         "line": {"color": "#9CA3AF", "dash": "dash"}, "hoverinfo": "skip"},
        {"type": "scatter", "mode": "markers", "name": "SPD runs", "x": d["accept_length_measured"].tolist(),
         "y": d["accept_length_predicted"].tolist(), "text": d["label"].tolist(),
         "marker": {"color": COLORS["spd"], "size": 11},
         "hovertemplate": "%{text}<br>measured %{x:.3f}, predicted %{y:.3f}<extra></extra>"},
    ], "layout": layout(380, xaxis={"title": {"text": "measured accept length n·N/K"}, "range": [lo, hi]},
                        yaxis={"title": {"text": "closed form at measured alpha"}, "range": [lo, hi], "scaleanchor": "x"})}


def validation_scatter(df: pd.DataFrame, what: str = "speedup") -> dict:
    """Measured (x) vs predicted (y) ``speedup`` or ``tokens_per_s``, one marker per run, by role; the
    diagonal y = x is a perfect prediction."""
    mx, py = f"measured_{what}", f"predicted_{what}"
    d = df.dropna(subset=[mx, py])
    vals = pd.concat([d[mx], d[py]]) if len(d) else pd.Series([0.0, 1.0])
    lo, hi = float(vals.min()), float(vals.max())
    pad = 0.06 * (hi - lo or 1.0)
    lo, hi = max(lo - pad, 0.0), hi + pad
    colors = {FITTED: COLORS["spd"], PREDICTED_ONLY: COLORS["eagle3"], FORECAST: COLORS["ppsd"]}
    unit = "x" if what == "speedup" else " tok/s"
    data = [{"type": "scatter", "mode": "lines", "x": [lo, hi], "y": [lo, hi], "name": "y = x (perfect prediction)",
             "line": {"color": "#9CA3AF", "dash": "dash"}, "hoverinfo": "skip"}]
    for role, g in d.groupby("role", sort=False):
        err = g[f"error_{what}_pct"]
        data.append({"type": "scatter", "mode": "markers", "name": role, "x": g[mx].tolist(), "y": g[py].tolist(),
                     "text": [f"{r}<br>error {e:+.1f} %" for r, e in zip(g["run"], err)],
                     "marker": {"color": colors.get(role, "#6B7280"), "size": 11},
                     "hovertemplate": f"%{{text}}<br>measured %{{x:.3f}}{unit}, predicted %{{y:.3f}}{unit}<extra></extra>"})
    title = "speedup over AR (x)" if what == "speedup" else "tokens/s"
    return {"data": data, "layout": layout(380, xaxis={"title": {"text": f"measured {title}"}, "range": [lo, hi]},
                                           yaxis={"title": {"text": f"predicted {title}"}, "range": [lo, hi],
                                                  "scaleanchor": "x"})}
