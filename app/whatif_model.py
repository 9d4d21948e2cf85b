"""What-if knobs -> scenario -> closed-form curves. No Streamlit here: pages, tests, notebooks and the
latency benchmark call these functions, and every number comes from `sim` (scenario parser,
method registry, `sim.closed_form.predict_grid`); this module only arranges inputs and outputs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from sim.closed_form import predict_grid, predict_scenario
from sim.errors import InputError
from sim.scenario import Scenario, parse_scenario

SOURCE = "What-if settings"  # stands in for a file name in InputError messages

# method key -> display label, in legend order. Pipelined methods are swept over stages; chain
# drafters (EAGLE-3, SD) run on one device and are flat lines on the stages axis.
LABELS = {"spd": "SPD", "spd_speculative": "SPD, speculative control", "eagle3": "EAGLE-3", "ppsd": "PPSD",
          "sd": "Vanilla SD", "ar_pipeline": "Pipelined AR", "ar": "AR (1 device)"}
PIPELINED = ("spd", "spd_speculative", "ppsd", "ar_pipeline")
SINGLE_DEVICE = ("eagle3", "sd", "ar")


@dataclass(frozen=True)
class Knobs:
    """Everything the What-if sliders set. Times in ms per token at batch 1; alphas per-draft conditional."""

    layers: int = 32
    stages: int = 8
    draft_layers: int = 3
    alpha_spd: float = 0.81
    alpha_eagle3: float = 0.72
    eagle3_steps: int = 7
    alpha_ppsd: float = 0.60
    ppsd_draft_layers: int = 1
    alpha_sd: float = 0.70
    sd_gamma: int = 4
    sd_cost_ratio: float = 0.10
    layer_ms: float = 0.886
    draft_layer_ms: float = 1.06
    hop_ms: float = 0.15
    stage_overhead_ms: float = 0.20
    verify_ms: float = 0.43
    cycle_overhead_ms: float = 0.90
    max_stages: int = 32  # right end of the stages axis (clipped to the layer count)
    # also SPD whose controller sends the next GO before verifying (`spd run --speculative-control`; same
    # alpha and draft as SPD; measured on 2x H100 in session 7, docs/executor.md)
    speculative_control: bool = False

    @classmethod
    def from_mapping(cls, values: dict) -> "Knobs":
        """Build from session state / a dict, ignoring unrelated keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def as_dict(self) -> dict:
        return asdict(self)


def scenario_dict(k: Knobs) -> dict:
    """The knobs as a scenario file (docs/scenario-format.md); the page offers it as a download so the
    same question can be asked of `spd predict` / `spd simulate`."""
    return {
        "version": 1,
        "name": "what-if dashboard",
        "target": {"layers": int(k.layers)},
        "timing_ms": {
            "layer": k.layer_ms, "stage_overhead": k.stage_overhead_ms, "hop": k.hop_ms,
            "draft_layer": k.draft_layer_ms, "verify": k.verify_ms, "cycle_overhead": k.cycle_overhead_ms,
        },
        "acceptance": {"alpha": k.alpha_spd},
        "methods": [
            {"method": "ar", "name": LABELS["ar"]},
            {"method": "spd", "name": LABELS["spd"], "stages": int(k.stages), "draft_layers": int(k.draft_layers)},
            {"method": "eagle3", "name": LABELS["eagle3"], "steps": int(k.eagle3_steps), "draft_layers": 1,
             "acceptance": {"alpha": k.alpha_eagle3}},
            {"method": "ppsd", "name": LABELS["ppsd"], "stages": int(k.stages), "draft_layers": int(k.ppsd_draft_layers),
             "acceptance": {"alpha": k.alpha_ppsd}},
            {"method": "sd", "name": LABELS["sd"], "gamma": int(k.sd_gamma), "cost_ratio": k.sd_cost_ratio,
             "acceptance": {"alpha": k.alpha_sd}},
            {"method": "ar_pipeline", "name": LABELS["ar_pipeline"], "stages": int(k.stages)},
        ] + ([{"method": "spd_speculative", "name": LABELS["spd_speculative"], "stages": int(k.stages),
               "draft_layers": int(k.draft_layers)}] if k.speculative_control else []),
    }


def build_scenario(k: Knobs) -> Scenario:
    """Parse the knobs through the one scenario validator: impossible combinations (stages > layers,
    ...) raise InputError with the same message the CLI would print."""
    return parse_scenario(scenario_dict(k), SOURCE)


def point_table(k: Knobs) -> pd.DataFrame:
    """Every method at the chosen configuration (one row each, the columns of `spd predict --json`)."""
    preds = predict_scenario(build_scenario(k))
    rows = [p.to_json() for p in preds]
    cols = ["name", "theoretical_speedup", "wallclock_speedup", "tokens_per_s", "cycle_ms", "accept_length", "alpha"]
    return pd.DataFrame(rows)[cols]


def stage_axis(k: Knobs) -> np.ndarray:
    return np.arange(2, max(2, min(int(k.max_stages), int(k.layers))) + 1)


def curves(k: Knobs) -> pd.DataFrame:
    """Long table: one row per (method, stages) with theoretical and predicted wall-clock speedup,
    tokens/s, cycle ms and (SPD) whether the draft module is hidden behind the stage forward."""
    scen = build_scenario(k)
    n = stage_axis(k)
    frames = []
    for spec in scen.methods:
        if spec.method in PIPELINED:
            out = predict_grid(scen, spec, stages=n)
        else:
            out = predict_grid(scen, spec)  # no stages: one value, drawn flat across the axis
        df = pd.DataFrame({"stages": n})
        for col in ("theoretical_speedup", "wallclock_speedup", "tokens_per_s", "cycle_ms", "accept_length"):
            if col in out and out[col] is not None:
                df[col] = np.broadcast_to(np.asarray(out[col], dtype=float), n.shape)
        df["draft_hidden"] = np.broadcast_to(np.asarray(out["draft_hidden"], dtype=bool), n.shape) if "draft_hidden" in out else True
        df["method"] = spec.method
        df["label"] = LABELS[spec.method]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Best:
    method: str
    label: str
    stages: int | None  # None for single-device methods
    wallclock_speedup: float
    tokens_per_s: float


def best_configuration(df: pd.DataFrame) -> Best:
    """Highest predicted wall-clock speedup over every method and stage count on this hardware."""
    row = df.loc[df["wallclock_speedup"].idxmax()]
    stages = int(row["stages"]) if row["method"] in PIPELINED else None
    return Best(row["method"], row["label"], stages, float(row["wallclock_speedup"]), float(row["tokens_per_s"]))


def draft_exposed_from(df: pd.DataFrame) -> int | None:
    """Smallest stage count at which SPD's draft module is slower than a stage (no longer hidden), or None."""
    spd = df[(df["method"] == "spd") & (~df["draft_hidden"].astype(bool))]
    return int(spd["stages"].min()) if len(spd) else None


def value_at(df: pd.DataFrame, method: str, stages: int, column: str = "wallclock_speedup") -> float:
    sel = df[(df["method"] == method) & (df["stages"] == stages)]
    if sel.empty:
        raise InputError(f"{SOURCE}: stages: {stages} is outside the plotted range")
    return float(sel[column].iloc[0])
