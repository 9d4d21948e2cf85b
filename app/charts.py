"""Plotly figures for the pages, built as plain dicts (plotly JSON).

Why dicts: building the same chart through plotly.graph_objects costs ~50-100 ms of validation per
slider change on a 2-core machine, a third of the 300 ms budget; Streamlit validates a dict once
(~10 ms). Values are Python lists, so tests read the traces straight back from the chart's JSON.
"""
from __future__ import annotations

import pandas as pd

from .whatif_model import LABELS, Best

# One colour per method, the same on every page.
COLORS = {"spd": "#C2410C", "spd_speculative": "#F59E0B", "eagle3": "#2563EB", "ppsd": "#7C3AED", "sd": "#059669", "ar_pipeline": "#6B7280", "ar": "#111827"}
FONT = {"family": "Inter, Segoe UI, Helvetica, Arial, sans-serif", "size": 13}


def layout(height: int = 460, **extra) -> dict:
    base = {
        "height": height, "template": "plotly_white", "font": FONT, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0, "font": {"size": 12}},
        "hoverlabel": {"font": {"size": 12}}, "modebar": {"orientation": "v"},
    }
    base.update(extra)
    return base


def trace_name(method: str, kind: str) -> str:
    """Legend / trace name; tests look traces up by it."""
    return f"{LABELS[method]} · {kind}"


def trace(fig: dict, name: str) -> dict:
    """The trace called ``name`` (KeyError if absent)."""
    for t in fig["data"]:
        if t.get("name") == name:
            return t
    raise KeyError(name)


def speedup_figure(df: pd.DataFrame, stages: int, best: Best, exposed_from: int | None,
                   show_theoretical: bool = True) -> dict:
    """Speedup over single-device AR versus pipeline stages, every method on one chart.

    Solid: predicted wall-clock (closed form with the timings); dotted: theoretical (layer units).
    Single-device methods (EAGLE-3, vanilla SD) do not use stages: flat lines for comparison. The
    shaded band is where SPD's draft module is slower than a stage; the star is the best method
    and stage count for this hardware.
    """
    data, shapes, annotations = [], [], []
    x_max = int(df["stages"].max())
    if exposed_from is not None:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": exposed_from - 0.5, "x1": x_max + 0.5, "y0": 0, "y1": 1,
                       "fillcolor": "#FDE68A", "opacity": 0.3, "line": {"width": 0}, "layer": "below"})
        annotations.append({"xref": "x", "yref": "paper", "x": exposed_from - 0.4, "y": 0.98, "xanchor": "left", "yanchor": "top",
                            "showarrow": False, "text": "draft module exposed (slower than a stage)",
                            "font": {"size": 11, "color": "#92400E"}})
    for method in ("spd", "spd_speculative", "eagle3", "ppsd", "sd", "ar_pipeline"):
        d = df[df["method"] == method]
        if d.empty:
            continue
        x = d["stages"].tolist()
        data.append({
            "type": "scatter", "mode": "lines", "name": trace_name(method, "predicted wall-clock"), "x": x,
            "legendgroup": method,
            "y": d["wallclock_speedup"].tolist(), "line": {"color": COLORS[method], "width": 3 if method == "spd" else 2},
            "customdata": d[["tokens_per_s", "cycle_ms"]].to_numpy().tolist(),
            "hovertemplate": "n=%{x}: %{y:.2f}x, %{customdata[0]:.1f} tok/s, cycle %{customdata[1]:.2f} ms<extra>%{fullData.name}</extra>",
        })
        if show_theoretical:
            data.append({
                "type": "scatter", "mode": "lines", "name": trace_name(method, "theoretical"), "x": x,
                "legendgroup": method, "showlegend": False,
                "y": d["theoretical_speedup"].tolist(), "opacity": 0.8,
                "line": {"color": COLORS[method], "width": 1.5, "dash": "dot"},
                "hovertemplate": "n=%{x}: %{y:.2f}x (layer units)<extra>%{fullData.name}</extra>",
            })
    spd_here = df[(df["method"] == "spd") & (df["stages"] == stages)]
    if not spd_here.empty:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": stages, "x1": stages, "y0": 0, "y1": 1,
                       "line": {"color": "#9CA3AF", "width": 1, "dash": "dash"}})
        data.append({"type": "scatter", "mode": "markers", "name": "chosen SPD configuration", "showlegend": False,
                     "x": [stages], "y": [float(spd_here["wallclock_speedup"].iloc[0])],
                     "marker": {"size": 11, "color": COLORS["spd"], "line": {"color": "white", "width": 2}},
                     "hovertemplate": "chosen: n=%{x}, %{y:.2f}x<extra></extra>"})
    best_x = best.stages if best.stages is not None else int(df["stages"].min())
    label = f"best: {best.label}" + (f" n={best.stages}" if best.stages else "") + f", {best.wallclock_speedup:.2f}x"
    data.append({"type": "scatter", "mode": "markers+text", "name": "best configuration", "showlegend": False,
                 "x": [best_x], "y": [best.wallclock_speedup], "text": [label], "textposition": "top right",
                 "textfont": {"size": 12}, "hovertemplate": "%{text}<extra></extra>",
                 "marker": {"symbol": "star", "size": 20, "color": "#FACC15", "line": {"color": "#111827", "width": 1.5}}})
    shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                   "line": {"color": COLORS["ar"], "width": 1}})
    annotations.append({"xref": "paper", "yref": "y", "x": 1, "y": 1, "xanchor": "right", "yanchor": "top", "showarrow": False,
                        "text": "AR on 1 device", "font": {"size": 11}})
    return {"data": data, "layout": layout(
        shapes=shapes, annotations=annotations,
        xaxis={"title": {"text": "pipeline stages n (devices for the stages)"}, "dtick": 2 if x_max <= 32 else 4,
               "range": [1.5, x_max + 0.5]},
        yaxis={"title": {"text": "speedup over single-device AR (x)"}, "rangemode": "tozero"},
    )}
