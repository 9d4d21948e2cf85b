"""The interface every decoding method implements (one small module per method, Vidur-style registry).

A method module defines a subclass of :class:`DecodingMethod` and registers it with
``@register``. The closed form (`predict`) lives here; the discrete-event simulator keeps its
per-method processes in ``sim/des/`` behind the same registry names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..scenario import MethodSpec, Scenario


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


class DecodingMethod:
    name: ClassVar[str]
    summary: ClassVar[str]

    def validate(self, spec: MethodSpec, scenario: Scenario) -> None:
        """Raise InputError (naming file and field) for parameters this method cannot take."""
        raise NotImplementedError

    def label(self, spec: MethodSpec) -> str:
        """Default display name when the file gives none."""
        return spec.method

    def predict(self, spec: MethodSpec, scenario: Scenario) -> MethodPrediction:
        raise NotImplementedError
