"""Contention of uninstrumented runs whose stages share a device: fitted through the simulator.

A full trace synchronises the stream at every recorded event, which changes how two processes time-slice one GPU:
on 2x H100 (session 11) the full traces of n=3/4 on two GPUs gave kappa 0.56-0.58 per further stage, and the same
configurations run uninstrumented needed 0.32-0.55, more for longer forwards (qwen3-4b n=4: 0.32 at 1.4 ms,
llama-3.1-8b n=3: 0.55 at 2.6 ms). So the full traces cannot give it; the uninstrumented runs can, only as a whole
(a cycle-level trace has no per-stage times). For each such configuration this finds, with every other term of the profile fixed,
the c (1/ms) for which kappa = c x T (T: a forward's time alone) makes the simulator's tokens/s match the
measured mean, and keeps the median of those c per method (``StageModel.untraced_kappa_per_ms_by_method``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq

from .extract import RunMeasurement
from .profile import Profile

C_MAX_PER_MS = 2.0  # kappa = 2 at 1 ms: far beyond anything measured; a configuration that needs more is capped
METHODS = ("spd", "ppsd")  # stages that run concurrently (the AR pipeline's never do: its kappa is 0)


@dataclass(frozen=True)
class ConfigurationFit:
    """One configuration's c and what it was fitted on (for the calibrate summary)."""

    label: str
    method: str
    runs: int
    c_per_ms: float
    forward_alone_ms: tuple[float, ...]  # T of its stages that share a device
    capped: bool = False


def shares_stage_devices(r: RunMeasurement) -> bool:
    """Whether some device holds more than one of the run's pipeline stages."""
    return any(r.stages_on_device(s) > 1 for s in range(1, r.n + 1))


def untraced_shared_runs(runs: list[RunMeasurement]) -> list[RunMeasurement]:
    """The runs this fits on: cycle-level (uninstrumented) SPD / PPSD runs of the default control with stages
    sharing a device."""
    return [r for r in runs if r.trace_level == "cycle" and r.method in METHODS and r.control == "after_verify"
            and shares_stage_devices(r)]


def _with_c(profile: Profile, method: str, c: float) -> Profile:
    st = profile.stage
    return replace(profile, stage=replace(st, untraced_kappa_per_ms_by_method={**st.untraced_kappa_per_ms_by_method,
                                                                                method: c}))


def fit_configuration(profile: Profile, runs: list[RunMeasurement], seed: int = 0) -> ConfigurationFit | None:
    """c for one configuration's runs (repeats of one configuration): predicted mean tokens/s = measured mean;
    None where the profile cannot predict them (their notes in `spd validate` say why)."""
    from .validate import validate_runs  # validate fits profiles for leave-one-out: import here, not at the top

    r0 = runs[0]
    measured = float(np.mean([r.tokens_per_s for r in runs]))

    def gap(c: float) -> float:
        preds = [p.predicted_tokens_per_s for p in validate_runs(runs, _with_c(profile, r0.method, c), seed=seed)]
        return float(np.mean(preds)) - measured if all(p is not None for p in preds) else float("nan")

    st = profile.stage
    ts = tuple(st.alone_ms(k, r0.shape.key, r0.shape.layer_mparams)
               for s, k in enumerate(r0.split, start=1) if r0.stages_on_device(s) > 1)
    lo, hi = gap(0.0), gap(C_MAX_PER_MS)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if lo <= 0:  # slower than measured even without contention beyond queueing for the device
        c, capped = 0.0, True
    elif hi >= 0:
        c, capped = C_MAX_PER_MS, True
    else:
        c, capped = float(brentq(gap, 0.0, C_MAX_PER_MS, xtol=1e-3)), False
    return ConfigurationFit(r0.label, r0.method, len(runs), c, ts, capped)


def fit_untraced_contention(profile: Profile, runs: list[RunMeasurement],
                            seed: int = 0) -> tuple[Profile, list[ConfigurationFit]]:
    """``profile`` with the uninstrumented contention of ``runs`` (``untraced_shared_runs``; the profile unchanged
    when there are none) and the per-configuration fits it comes from."""
    from .validate import repeat_key

    groups: dict[tuple, list[RunMeasurement]] = {}
    for r in untraced_shared_runs(runs):
        groups.setdefault(repeat_key(r), []).append(r)
    fits = [f for f in (fit_configuration(profile, g, seed) for g in groups.values()) if f is not None]
    st = profile.stage
    c_by, span = dict(st.untraced_kappa_per_ms_by_method), dict(st.untraced_forward_range_ms)
    for method in sorted({f.method for f in fits}):
        mine = [f for f in fits if f.method == method]
        c_by[method] = float(np.median([f.c_per_ms for f in mine]))
        ts = [t for f in mine for t in f.forward_alone_ms]
        span[method] = [min(ts), max(ts)]
    if not fits:
        return profile, fits
    return replace(profile, stage=replace(st, untraced_kappa_per_ms_by_method=c_by, untraced_forward_range_ms=span)), fits
