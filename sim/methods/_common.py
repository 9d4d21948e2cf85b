"""Helpers shared by the method modules: timings, acceptance, pipeline splits (validation + stage times).

Kept in one place so every method reads the scenario the same way (one way to do a thing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import closed_form as cf
from ..errors import InputError, where
from ..scenario import Acceptance, MethodSpec, Scenario, stage_split


def err(scenario: Scenario, spec: MethodSpec, fld: str, msg: str) -> InputError:
    return InputError(f"{where(scenario.source, spec.field_prefix + ('.' + fld if fld else ''))}: {msg}")


def timing_ms(scenario: Scenario, spec: MethodSpec, names: tuple[str, ...]) -> dict[str, float] | None:
    """Means (ms) of the named timings, ``None`` when the scenario has no timing section (theory only).

    ``ar_token`` falls back to layers x layer. A missing timing raises InputError naming the field.
    """
    if scenario.timing is None:
        return None
    out = {name: scenario.require_timing(spec, name) for name in ("ar_token",) + names}
    if out["ar_token"] <= 0:
        field = "timing_ms.ar_token" if scenario.timing.ar_token is not None else "timing_ms.layer"
        raise InputError(f"{where(scenario.source, field)}: the single-device AR token time must be > 0 ms "
                         f"(it is the denominator of every wall-clock speedup)")
    return out


def require_int(scenario: Scenario, spec: MethodSpec, key: str, minimum: int) -> int:
    v = getattr(spec, key)
    if v is None:
        raise err(scenario, spec, key, f"required for method '{spec.method}'")
    if v < minimum:
        raise err(scenario, spec, key, f"must be >= {minimum} for method '{spec.method}', got {v}")
    return v


# ------------------------------------------------------------------------------------------ acceptance
def single_draft_alpha(acc: Acceptance) -> float:
    """Acceptance of a one-token draft (SPD/PPSD): the first chain position if per-position rates are
    given, else the (stationary, i.i.d.-equivalent) alpha. The steady-state cycle count only depends
    on the fraction of rejects, so a Markov or recorded sequence enters through its mean."""
    return acc.per_position[0] if acc.per_position else acc.alpha


def chain_tokens(acc: Acceptance, steps: np.ndarray | int) -> np.ndarray:
    """Expected tokens per round of a chain of ``steps`` drafts, honouring per-position acceptance
    (positions past the given list keep the last value, as :meth:`Acceptance.alpha_at` does)."""
    steps = np.asarray(steps)
    if not acc.per_position:
        return cf.leviathan_expected_tokens(acc.alpha, steps)
    longest = int(np.max(steps))
    a = np.array([acc.alpha_at(k) for k in range(1, longest + 1)])
    cum = np.concatenate([[0.0], np.cumsum(np.cumprod(a))])  # cum[m] = sum_{k<=m} prod_{j<=k} a_j
    return 1.0 + cum[steps]


# ------------------------------------------------------------------------------------------- pipelines
@dataclass(frozen=True)
class Stages:
    """A pipeline split: layers per stage and, with timings, the slowest and the summed stage time (ms)."""

    n: np.ndarray | int
    largest_layers: np.ndarray | int
    max_stage_ms: np.ndarray | float | None
    sum_stage_ms: np.ndarray | float | None
    split: tuple[int, ...] | None  # the explicit or balanced split (scalar evaluations only)


def validate_pipeline(spec: MethodSpec, scenario: Scenario, min_stages: int) -> None:
    layers = scenario.target.layers
    n = require_int(scenario, spec, "stages", min_stages)
    if n > layers:
        raise err(scenario, spec, "stages", f"{n} stages but the target has only {layers} layers (target.layers)")
    if spec.split is not None:
        if len(spec.split) != n:
            raise err(scenario, spec, "split", f"has {len(spec.split)} entries for {n} stages")
        if sum(spec.split) != layers:
            raise err(scenario, spec, "split", f"sums to {sum(spec.split)} layers, target.layers is {layers}")
    if spec.stage_forward_ms is not None and len(spec.stage_forward_ms) != n:
        raise err(scenario, spec, "stage_forward_ms", f"has {len(spec.stage_forward_ms)} entries for {n} stages")
    if spec.placement is not None and len(spec.placement.stages) != n:
        raise err(scenario, spec, "placement.stages", f"has {len(spec.placement.stages)} devices for {n} stages")
    if scenario.timing is not None:
        if spec.stage_forward_ms is None:
            scenario.require_timing(spec, "layer")
        scenario.require_timing(spec, "stage_overhead")


def pipeline_stages(spec: MethodSpec, scenario: Scenario, stages_axis: np.ndarray | None, min_stages: int) -> Stages:
    """Stage layout for the scenario's split, or balanced splits over a swept ``stages`` axis.

    A stage's time is (its layers x ``timing_ms.layer``, or its ``stage_forward_ms`` entry when given)
    plus ``timing_ms.stage_overhead``.
    """
    layers = scenario.target.layers
    t = scenario.timing
    overhead = t.mean_ms("stage_overhead") if t is not None else 0.0
    if stages_axis is None:
        split = stage_split(spec, scenario.target)
        if t is None:
            return Stages(len(split), max(split), None, None, split)
        if spec.stage_forward_ms is not None:
            per_stage = [lat.mean_ms + overhead for lat in spec.stage_forward_ms]
        else:
            per_stage = [k * t.mean_ms("layer") + overhead for k in split]
        return Stages(len(split), max(split), max(per_stage), sum(per_stage), split)
    if spec.split is not None or spec.stage_forward_ms is not None:
        raise err(scenario, spec, "split" if spec.split is not None else "stage_forward_ms",
                  "fixes the stage count; drop it to sweep stages (balanced splits are used)")
    n = np.asarray(stages_axis)
    bad = (n < min_stages) | (n > layers)
    if np.any(bad):
        raise InputError(f"stages: {spec.method} needs {min_stages} <= stages <= target.layers={layers}, got {int(n[bad].flat[0])}")
    largest = cf.balanced_largest_stage(layers, n)
    if t is None:
        return Stages(n, largest, None, None, None)
    layer = t.mean_ms("layer")
    return Stages(n, largest, largest * layer + overhead, layers * layer + n * overhead, None)


def add_wallclock(out: dict, wc: cf.WallClock, scenario: Scenario, spec: MethodSpec) -> dict:
    if np.any(np.asarray(wc.cycle_ms) <= 0):  # all-zero times: tokens/s would be infinite
        raise InputError(f"{where(scenario.source, 'timing_ms')}: every time {spec.field_prefix} '{spec.method}' "
                         f"uses is 0 ms, so its cycle takes no time; give non-zero times")
    out["cycle_ms"] = wc.cycle_ms
    out["tokens_per_s"] = wc.tokens_per_s
    out["wallclock_speedup"] = wc.wallclock_speedup
    return out
