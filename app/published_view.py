"""Published tables as data frames and a figure (no Streamlit; the Published page and notebook 01 use it).

All numbers come from `sim.reproduce` (round trip of the published theoretical table through the
predict path, and the out-of-sample forecast of held-out rows).
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from sim import reproduce

from .charts import COLORS, layout

METHOD_LABELS = {"spd": "SPD", "eagle3": "EAGLE-3", "ppsd": "PPSD"}


def round_trip_frame(data: dict, tokens: int | None = reproduce.DEFAULT_TOKENS) -> pd.DataFrame:
    df = pd.DataFrame([asdict(e) for e in reproduce.round_trip(data, tokens)])
    df["error"] = df["predicted"] - df["published"]
    df["method"] = df["method"].map(METHOD_LABELS)
    return df


def table_view(rt: pd.DataFrame, model: str, temperature: float, mix: str) -> pd.DataFrame:
    """The paper's layout: one row per method configuration, one column per dataset, regenerated values."""
    sel = rt[(rt["model"] == model) & (rt["temperature"] == temperature) & (rt["training_mix"] == mix)]
    wide = sel.pivot_table(index=["method", "config"], columns="dataset", values="predicted", sort=False)
    cols = [c for c in reproduce.DATASETS if c in wide.columns]
    return wide[cols].reset_index()


def forecast_frame(data: dict, tokens: int | None = reproduce.DEFAULT_TOKENS) -> pd.DataFrame:
    rows = []
    for e in reproduce.forecast(data, tokens):
        d = asdict(e)
        d.pop("params")
        d.update(error=e.error, baseline_error=e.baseline_error, rel_error=e.error / e.published,
                 baseline_rel_error=e.baseline_error / e.published)
        rows.append(d)
    df = pd.DataFrame(rows)
    df["method"] = df["method"].map(METHOD_LABELS)
    return df


def summary_frame(data: dict, tokens: int | None = reproduce.DEFAULT_TOKENS) -> pd.DataFrame:
    df = pd.DataFrame([asdict(s) for s in reproduce.summarize(reproduce.forecast(data, tokens))])
    df["method"] = df["method"].map(METHOD_LABELS)
    return df


def forecast_figure(fc: pd.DataFrame) -> dict:
    """Held-out published vs predicted theoretical speedup (plotly dict); the diagonal is a perfect forecast.
    The constant-acceptance baseline is in the legend, hidden until clicked."""
    lo = float(min(fc["published"].min(), fc["predicted"].min(), fc["baseline"].min())) - 0.1
    hi = float(max(fc["published"].max(), fc["predicted"].max(), fc["baseline"].max())) + 0.1
    data = [{"type": "scatter", "mode": "lines", "x": [lo, hi], "y": [lo, hi], "name": "perfect forecast",
             "line": {"color": "#9CA3AF", "dash": "dash"}, "hoverinfo": "skip"}]
    key = {"SPD": "spd", "EAGLE-3": "eagle3", "PPSD": "ppsd"}
    for label, d in fc.groupby("method", sort=False):
        color = COLORS[key[label]]
        text = (d["model"] + " T=" + d["temperature"].astype(str) + " " + d["training_mix"] + " " + d["dataset"]
                + " " + d["held_out"]).tolist()
        data.append({"type": "scatter", "mode": "markers", "name": f"{label} · depth model", "x": d["published"].tolist(),
                     "y": d["predicted"].tolist(), "text": text, "marker": {"color": color, "size": 9},
                     "hovertemplate": "%{text}<br>published %{x:.2f}x, forecast %{y:.2f}x<extra></extra>"})
        data.append({"type": "scatter", "mode": "markers", "name": f"{label} · constant acceptance", "x": d["published"].tolist(),
                     "y": d["baseline"].tolist(), "text": text, "visible": "legendonly",
                     "marker": {"color": color, "size": 8, "symbol": "x-thin", "line": {"width": 2, "color": color}},
                     "hovertemplate": "%{text}<br>published %{x:.2f}x, constant-alpha %{y:.2f}x<extra></extra>"})
    return {"data": data, "layout": layout(
        480, xaxis={"title": {"text": "published theoretical speedup (x)"}, "range": [lo, hi]},
        yaxis={"title": {"text": "forecast from the other rows (x)"}, "range": [lo, hi], "scaleanchor": "x", "scaleratio": 1},
    )}
