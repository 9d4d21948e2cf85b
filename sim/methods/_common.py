"""Helpers shared by the method modules: timings, acceptance, pipeline splits (validation + stage times), and
the common base of the pipelined-draft methods (SPD, PPSD).

Kept in one place so every method reads the scenario the same way (one way to do a thing).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from .. import closed_form as cf
from ..errors import InputError, where
from ..scenario import Acceptance, MethodSpec, Scenario, _int, stage_split
from .base import DecodingMethod, Grid


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


def finite_tokens(spec: MethodSpec, scenario: Scenario) -> int | None:
    """The optional ``tokens`` key (N committed tokens incl. the prefill token, >= 3): finite-length accounting."""
    if spec.extra.get("tokens") is None:
        return None
    return _int(spec.extra["tokens"], scenario.source, f"{spec.field_prefix}.tokens", minimum=3)


class PipelinedDraftMethod(DecodingMethod):
    """SPD and PPSD: n >= 2 stages, an L_s-layer draft, the same accept/flush rule (r committed tokens per cycle)
    and method keys. A subclass says where the draft runs through ``theoretical_speedup`` and ``cycle_ms``
    (closed-form functions of the same signatures) and may add checks and outputs."""

    grid_axes = ("alpha", "stages", "hop_ms", "draft_layers", "tokens")
    extra_keys = frozenset({"tokens"})
    timings = ("draft_layer", "stage_overhead", "hop", "verify", "cycle_overhead")
    theoretical_speedup: ClassVar[Callable[..., np.ndarray]]  # a staticmethod of cf: spd_/ppsd_theoretical_speedup
    cycle_ms: ClassVar[Callable[..., np.ndarray]]  # a staticmethod of cf: spd_/ppsd_cycle_ms
    # committed tokens per cycle (alpha, n, tokens): a reject costs n-1 refill cycles; speculative control n
    tokens_per_cycle: ClassVar[Callable[..., np.ndarray]] = staticmethod(cf.spd_tokens_per_cycle)

    def validate(self, spec, scenario) -> None:
        validate_pipeline(spec, scenario, min_stages=2)
        require_int(scenario, spec, "draft_layers", 1)
        self.validate_extra(spec, scenario)
        finite_tokens(spec, scenario)
        scenario.acceptance_for(spec)
        timing_ms(scenario, spec, self.timings)

    def validate_extra(self, spec, scenario) -> None:
        """Method-specific checks (after stages and draft_layers, before tokens, acceptance and timings)."""

    def extra_outputs(self, st: Stages, scenario) -> dict:
        """Method-specific outputs listed after ``alpha``."""
        return {}

    def add_cycle_outputs(self, out: dict, st: Stages, hop_ms, draft_ms) -> None:
        """Method-specific outputs that need timings."""

    def cycle_time(self, st: Stages, hop_ms, draft_ms, t: dict):
        """One cycle (ms) from the stage layout and the timings (``cycle_ms`` of the method's closed form)."""
        return self.cycle_ms(st.max_stage_ms, hop_ms, draft_ms, t["verify"], t["cycle_overhead"])

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        st = pipeline_stages(spec, scenario, grid.stages, min_stages=2)
        alpha = grid.get("alpha", single_draft_alpha(scenario.acceptance_for(spec)))
        ls = grid.get("draft_layers", spec.draft_layers)
        tokens = grid.get("tokens", finite_tokens(spec, scenario))
        r = self.tokens_per_cycle(alpha, st.n, tokens)
        out = {
            "theoretical_speedup": self.theoretical_speedup(alpha, st.n, scenario.target.layers, st.largest_layers, ls, tokens),
            "accept_length": np.asarray(st.n) * r,
            "tokens_per_cycle": r,
            "alpha": np.asarray(alpha, dtype=float),
            **self.extra_outputs(st, scenario),
            "stage_layers": list(st.split) if st.split else None,
            "tokens": tokens,
        }
        t = timing_ms(scenario, spec, self.timings)
        if t is not None:
            hop = grid.get("hop_ms", t["hop"])
            draft_ms = np.asarray(ls) * t["draft_layer"]
            cycle = self.cycle_time(st, hop, draft_ms, t)
            add_wallclock(out, cf.WallClock(cycle, r, t["ar_token"]), scenario, spec)
            self.add_cycle_outputs(out, st, hop, draft_ms)
        return out
