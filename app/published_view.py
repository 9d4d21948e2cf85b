"""Published tables as data frames and a figure (no Streamlit; the Published page and notebook 01 use it).

All numbers come from `sim.reproduce` (round trip of the published theoretical table through the
predict path, and the out-of-sample forecast of held-out rows).
"""
from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import plotly.graph_objects as go

from sim import reproduce

from .charts import COLORS, base_layout

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


def forecast_figure(fc: pd.DataFrame) -> go.Figure:
    """Held-out published vs predicted theoretical speedup; the diagonal is a perfect forecast."""
    fig = go.Figure()
    lo, hi = float(min(fc["published"].min(), fc["predicted"].min())) - 0.1, float(max(fc["published"].max(), fc["predicted"].max())) + 0.1
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#9CA3AF", dash="dash"), name="perfect forecast",
                             hoverinfo="skip"))
    key = {"SPD": "spd", "EAGLE-3": "eagle3", "PPSD": "ppsd"}
    for label, d in fc.groupby("method", sort=False):
        text = d["model"] + " T=" + d["temperature"].astype(str) + " " + d["training_mix"] + " " + d["dataset"] + " " + d["held_out"]
        fig.add_trace(go.Scatter(x=d["published"], y=d["predicted"], mode="markers", name=f"{label} · depth model",
                                 marker=dict(color=COLORS[key[label]], size=9), text=text,
                                 hovertemplate="%{text}<br>published %{x:.2f}x, predicted %{y:.2f}x<extra></extra>"))
        fig.add_trace(go.Scatter(x=d["published"], y=d["baseline"], mode="markers", name=f"{label} · constant acceptance",
                                 marker=dict(color=COLORS[key[label]], size=8, symbol="x-thin", line=dict(width=2, color=COLORS[key[label]])),
                                 text=text, visible="legendonly",
                                 hovertemplate="%{text}<br>published %{x:.2f}x, constant-alpha %{y:.2f}x<extra></extra>"))
    fig.update_xaxes(title="published theoretical speedup (x)", range=[lo, hi])
    fig.update_yaxes(title="forecast from the other rows (x)", range=[lo, hi], scaleanchor="x", scaleratio=1)
    return base_layout(fig, height=480)
