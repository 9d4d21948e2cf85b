"""The interface every decoding method implements (one small module per method, Vidur-style registry).

A method module defines a subclass of :class:`DecodingMethod` and registers it with
``@register``. The closed form lives here in two shapes that share one code path:
``predict_grid`` (numpy arrays over a grid of alpha / stages / hop / ..., used by ``spd sweep`` and
the dashboard) and ``predict`` (one scenario point, a :class:`MethodPrediction`), which by default
evaluates ``predict_grid`` at the scenario's own values. The discrete-event simulator keeps its
per-method processes in ``sim/des/`` behind the same registry names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..scenario import MethodSpec, Scenario

# Keys of predict_grid's output that are MethodPrediction fields; every other key goes to details.
_CORE_KEYS = ("theoretical_speedup", "accept_length", "alpha", "wallclock_speedup", "tokens_per_s", "cycle_ms", "tokens_per_cycle")


@dataclass(frozen=True)
class MethodPrediction:
    """Closed-form result for one method of a scenario. Times in ms; None where timings are absent."""

    name: str
    method: str
    theoretical_speedup: float  # layer-unit accounting of SPEC.md section 2
    accept_length: float  # tokens committed per round/cycle-equivalent as the method defines it (SPD: L_acc)
    alpha: float | None  # per-draft conditional acceptance used
    wallclock_speedup: float | None = None  # tokens/s over single-device AR tokens/s
    tokens_per_s: float | None = None
    cycle_ms: float | None = None  # one cycle (SPD/PPSD/AR pipeline: per cycle; SD/EAGLE: per round; AR: per token)
    tokens_per_cycle: float | None = None
    details: dict = field(default_factory=dict)  # method-specific extras (draft_hidden, stage layers, ...)

    def to_json(self) -> dict:
        d = {
            "name": self.name, "method": self.method,
            "theoretical_speedup": self.theoretical_speedup, "wallclock_speedup": self.wallclock_speedup,
            "tokens_per_s": self.tokens_per_s, "cycle_ms": self.cycle_ms, "accept_length": self.accept_length,
            "tokens_per_cycle": self.tokens_per_cycle, "alpha": self.alpha,
        }
        d.update(self.details)
        return d


@dataclass(frozen=True)
class Grid:
    """Axes of a vectorised evaluation. ``None`` = the scenario's value; arrays broadcast together.

    ``alpha`` replaces the method's acceptance by an i.i.d. per-draft alpha; ``hop_ms`` replaces
    ``timing_ms.hop``; ``tokens`` (N) switches SPD/PPSD to the finite-length count K.
    """

    alpha: np.ndarray | None = None
    stages: np.ndarray | None = None
    hop_ms: np.ndarray | None = None
    draft_layers: np.ndarray | None = None
    steps: np.ndarray | None = None
    gamma: np.ndarray | None = None
    tokens: np.ndarray | None = None

    def get(self, name: str, default):
        v = getattr(self, name)
        return default if v is None else v


class DecodingMethod:
    name: ClassVar[str]
    summary: ClassVar[str]
    # Method-specific keys a scenario's method entry may carry (kept raw in MethodSpec.extra).
    extra_keys: ClassVar[frozenset[str]] = frozenset()
    # Grid axes predict_grid reads (see Grid); `spd sweep` expands only these for this method.
    grid_axes: ClassVar[tuple[str, ...]] = ()

    def validate(self, spec: MethodSpec, scenario: Scenario) -> None:
        """Raise InputError (naming file and field) for parameters this method cannot take."""
        raise NotImplementedError

    def label(self, spec: MethodSpec) -> str:
        """Default display name when the file gives none."""
        return spec.method

    def predict_grid(self, spec: MethodSpec, scenario: Scenario, grid: Grid) -> dict[str, np.ndarray]:
        """Arrays of theoretical_speedup, accept_length, tokens_per_cycle, alpha and, with timings,
        cycle_ms, tokens_per_s, wallclock_speedup (+ method extras) over the grid."""
        raise NotImplementedError

    def predict(self, spec: MethodSpec, scenario: Scenario) -> MethodPrediction:
        out = self.predict_grid(spec, scenario, Grid())
        scalars = {k: _scalar(v) for k, v in out.items()}
        core = {k: scalars.pop(k, None) for k in _CORE_KEYS}
        return MethodPrediction(name=spec.name or self.label(spec), method=spec.method, details=scalars, **core)


def _scalar(v):
    """One grid point -> a JSON-friendly Python scalar (bool stays bool, arrays of one value unwrap)."""
    if isinstance(v, (list, tuple, str)) or v is None:
        return v
    a = np.asarray(v)
    if a.size != 1:
        return a.tolist()
    x = a.item()
    return bool(x) if a.dtype == bool else (int(x) if np.issubdtype(a.dtype, np.integer) else float(x))
