"""Executor traces for the Calibration page (no Streamlit): load a trace set or uploaded trace files
through the shared loaders (`sim.traces.load_trace` via `sim.calibration.extract.measure`) and
compare what was measured with what the package predicts.

What is compared today (the timing validation, `spd validate`, is not in the package yet):
* acceptance accounting, per SPD run: the measured equivalent accept length n·N/K (mean over
  prompts) against `sim.closed_form.spd_accept_length_finite` at the run's measured per-draft alpha
  and token count: checks that the executor's cycles follow K = N + n - 2 + (n-1)R;
* measured tokens/s and speedup over the AR run of the same model shape in the set.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from sim.calibration.extract import RunMeasurement, measure_trace
from sim.closed_form import spd_accept_length_finite
from sim.errors import InputError
from sim.traces import TRACE_FILE, Trace, load_trace

from .charts import COLORS, layout


def trace_sets(root: str | Path) -> dict[str, Path]:
    """Folders under ``root`` that hold run directories (each with a trace.jsonl): name -> folder."""
    root = Path(root)
    if not root.is_dir():
        return {}
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if any((r / TRACE_FILE).is_file() for r in d.iterdir() if r.is_dir()) or (d / TRACE_FILE).is_file():
            out[d.name] = d
    return out


Run = tuple[Trace, RunMeasurement]  # the raw trace (its cycle counts K) and the calibration samples


def _load(path: str | Path) -> Run:
    tr = load_trace(path)
    return tr, measure_trace(tr)


def load_folder(folder: str | Path) -> list[Run]:
    folder = Path(folder)
    runs = sorted(r for r in folder.iterdir() if r.is_dir() and (r / TRACE_FILE).is_file()) if folder.is_dir() else []
    if (folder / TRACE_FILE).is_file():
        runs = [folder]
    if not runs:
        raise InputError(f"{folder}: no run directories with a {TRACE_FILE} inside")
    return [_load(r) for r in runs]


def load_uploaded(name: str, data: bytes) -> Run:
    """One uploaded trace.jsonl; errors name the uploaded file, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="spd-upload-") as tmp:
        path = Path(tmp) / TRACE_FILE
        path.write_bytes(data)
        try:
            tr, run = _load(path)
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), name)) from None
    run.path = name
    return tr, run


def measured_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per run: what was measured and, for SPD, the closed form's accept length at the measured alpha.

    Measured accept length = mean over prompts of n·N_i/K_i with K_i the cycles the executor counted;
    predicted = the finite-length closed form at the run's accept fraction and the same N_i.
    """
    ar_tps = {m.shape.key: m.tokens_per_s for _, m in runs if m.method == "ar"}
    rows = []
    for tr, m in runs:
        p = Path(m.path)
        row = {"run": p.parent.name if p.name == TRACE_FILE else m.path, "label": m.label, "method": m.method,
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
