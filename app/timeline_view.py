"""Simulator timelines for the Timeline page (no Streamlit): run `sim.des.simulate` with a trace
recorder and turn its Chrome-trace events into a plotly Gantt chart, one row per rank.

Rows: "cycles" on top (each cycle coloured by phase: fill, steady, refill), then rank 0 (the
controller: control message, draft module, verify; accept/reject marks), then one row per stage
rank (its forwards, with the hidden-state sends drawn as thin bars on the same row).
"""
from __future__ import annotations

from dataclasses import dataclass

from sim.des import TraceRecorder, simulate
from sim.des.trace import CONTROLLER_TID, CYCLE_TID, SEND_TID_BASE
from sim.errors import InputError

from .charts import layout
from .whatif_model import LABELS, Knobs, build_scenario

# event kind -> (legend label, colour, bar thickness)
KINDS = {
    "control": ("control message", "#9CA3AF", 0.55),
    "draft": ("draft (PDM / draft model)", "#C2410C", 0.55),
    "forward": ("stage / target forward", "#2563EB", 0.55),
    "verify": ("verify", "#7C3AED", 0.55),
    "send": ("hidden-state send", "#111827", 0.18),
    "other": ("other", "#6B7280", 0.4),
}
PHASES = {"fill": ("fill", "#FCD34D"), "steady": ("steady", "#86EFAC"), "refill": ("refill after reject", "#FCA5A5")}


@dataclass(frozen=True)
class TimelineRun:
    method: str
    label: str
    events: list[dict]
    summary: dict  # tokens, cycles, rejects, time_ms, tokens_per_s, speedup over AR, model


def run_timeline(knobs: Knobs, method: str, tokens: int, seed: int) -> TimelineRun:
    """Simulate ``tokens`` committed tokens of ``method`` at the knobs' configuration, recording a trace."""
    scen = build_scenario(knobs)
    spec = next((m for m in scen.methods if m.method == method), None)
    if spec is None:
        raise InputError(f"method: {method!r} is not on the What-if chart (one of {', '.join(LABELS)})")
    rec = TraceRecorder(1, LABELS[method])
    res = simulate(scen, spec, int(tokens), seed=int(seed), trace=rec)
    tps = 1000.0 * res.tokens / res.time_ms if res.time_ms > 0 else float("nan")
    summary = {
        "tokens": res.tokens, "cycles": res.cycles, "rejects": res.rejects, "time_ms": res.time_ms,
        "tokens_per_s": tps, "speedup_vs_ar": tps * res.ar_token_ms / 1000.0, "accept_length": res.accept_length,
        "model": res.model,
    }
    return TimelineRun(method, LABELS[method], rec.events, summary)


def _kind(name: str) -> str:
    low = name.lower()
    for key in ("control", "draft", "verify", "send"):
        if low.startswith(key):
            return key
    return "forward" if "forward" in low else "other"


def _row(tid: int) -> str:
    if tid == CYCLE_TID:
        return "cycles"
    if tid == CONTROLLER_TID:
        return "rank 0 (controller)"
    stage = tid - SEND_TID_BASE if tid >= SEND_TID_BASE else tid
    return f"rank {stage} (stage {stage})"


def timeline_figure(events: list[dict], x_max_ms: float | None = None, height: int | None = None) -> dict:
    """Gantt chart (plotly dict) of one run's trace events; times in ms."""
    bars: dict[str, dict] = {}
    phases: dict[str, dict] = {}
    marks = {"accept": ([], []), "reject": ([], [])}
    rows = set()
    for e in events:
        tid = e.get("tid")
        if e.get("ph") == "X":
            start, dur = e["ts"] / 1000.0, e["dur"] / 1000.0
            if tid == CYCLE_TID:
                phase = (e.get("args") or {}).get("phase", "steady")
                d = phases.setdefault(phase, {"x": [], "base": [], "text": []})
                d["x"].append(dur)
                d["base"].append(start)
                d["text"].append(e["name"])
                rows.add("cycles")
                continue
            kind = _kind(e["name"])
            d = bars.setdefault(kind, {"x": [], "base": [], "y": [], "text": []})
            d["x"].append(dur)
            d["base"].append(start)
            d["y"].append(_row(tid))
            d["text"].append(e["name"])
            rows.add(_row(tid))
        elif e.get("ph") == "i" and tid == CONTROLLER_TID:
            name = e["name"]
            # "accept 3/7" = a chain round that accepted 3 of 7 drafts: a reject unless all were accepted
            ok = name == "accept" or (name.startswith("accept ") and name.split()[1].split("/")[0] == name.split()[1].split("/")[1])
            if name.startswith("accept") or name == "reject":
                xs, ys = marks["accept" if ok else "reject"]
                xs.append(e["ts"] / 1000.0)
                ys.append(_row(tid))
    order = sorted(rows, key=lambda r: (-1, 0) if r == "cycles" else (0, int(r.split()[1])))
    data = []
    for phase, d in phases.items():
        label, color = PHASES.get(phase, (phase, "#E5E7EB"))
        data.append({"type": "bar", "orientation": "h", "name": f"cycle: {label}", "x": d["x"], "base": d["base"],
                     "y": ["cycles"] * len(d["x"]), "text": d["text"], "width": 0.6, "legendgroup": "cycles",
                     "marker": {"color": color, "line": {"color": "white", "width": 1}}, "textposition": "none",
                     "hovertemplate": "%{text}: %{base:.2f} + %{x:.2f} ms<extra>" + label + "</extra>"})
    for kind in KINDS:
        if kind not in bars:
            continue
        label, color, width = KINDS[kind]
        d = bars[kind]
        data.append({"type": "bar", "orientation": "h", "name": label, "x": d["x"], "base": d["base"], "y": d["y"],
                     "text": d["text"], "width": width, "textposition": "none", "marker": {"color": color},
                     "opacity": 0.9 if kind != "send" else 0.8,
                     "hovertemplate": "%{text}: %{base:.2f} + %{x:.2f} ms<extra>%{y}</extra>"})
    for what, (xs, ys) in marks.items():
        if xs:
            data.append({"type": "scatter", "mode": "markers", "name": "accepted" if what == "accept" else "rejected (flush)",
                         "x": xs, "y": ys, "hovertemplate": "%{x:.2f} ms<extra>" + what + "</extra>",
                         "marker": {"symbol": "triangle-down" if what == "accept" else "x", "size": 9 if what == "accept" else 11,
                                    "color": "#16A34A" if what == "accept" else "#DC2626",
                                    "line": {"width": 1 if what == "accept" else 2, "color": "#DC2626" if what != "accept" else "#166534"}}})
    xaxis = {"title": {"text": "time (ms)"}, "zeroline": False}
    if x_max_ms:
        xaxis["range"] = [0, x_max_ms * 1.01]
    return {"data": data, "layout": layout(
        height or 120 + 34 * len(order), barmode="overlay", bargap=0.3, xaxis=xaxis,
        yaxis={"categoryorder": "array", "categoryarray": order[::-1], "type": "category", "automargin": True},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0, "font": {"size": 11}},
    )}


def phase_counts(events: list[dict]) -> dict[str, int]:
    """Cycles per phase (fill / steady / refill) in a trace: tests and the page caption use it."""
    out: dict[str, int] = {}
    for e in events:
        if e.get("ph") == "X" and e.get("tid") == CYCLE_TID:
            phase = (e.get("args") or {}).get("phase", "steady")
            out[phase] = out.get(phase, 0) + 1
    return out
