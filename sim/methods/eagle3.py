"""EAGLE-3-style chain drafting on one device: m serial draft steps of an L_s-layer head over the
target's hidden states, then one target forward verifies the chain.

Theoretical: tau·L / (L_s·m + L) (SPEC.md 2; the published rows use L_s = 1), tau = 1 + sum_k
prod_{j<=k} a_j from per-position conditional acceptance (i.i.d. alpha if only alpha is given).
Wall clock: round = cycle_overhead + m·L_s·draft_layer + ar_token + verify; tau tokens per round.
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import add_wallclock, chain_tokens, require_int, timing_ms
from .base import DecodingMethod, Grid

_TIMINGS = ("draft_layer", "verify", "cycle_overhead")
DEFAULT_DRAFT_LAYERS = 1  # EAGLE-3's draft head is one decoder layer


@register
class Eagle3(DecodingMethod):
    name = "eagle3"
    summary = "EAGLE-3-style chain drafting: m serial draft steps, one verify forward"
    grid_axes = ("alpha", "steps", "draft_layers")

    def validate(self, spec, scenario) -> None:
        require_int(scenario, spec, "steps", 1)
        if spec.draft_layers is not None:
            require_int(scenario, spec, "draft_layers", 1)
        scenario.acceptance_for(spec)
        timing_ms(scenario, spec, _TIMINGS)

    def label(self, spec) -> str:
        return f"eagle3 m={spec.steps} Ls={spec.draft_layers or DEFAULT_DRAFT_LAYERS}"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        acc = scenario.acceptance_for(spec)
        m = grid.get("steps", spec.steps)
        ls = grid.get("draft_layers", spec.draft_layers or DEFAULT_DRAFT_LAYERS)
        tau = cf.leviathan_expected_tokens(grid.alpha, m) if grid.alpha is not None else chain_tokens(acc, m)
        out = {
            "theoretical_speedup": cf.eagle3_theoretical_speedup(tau, m, ls, scenario.target.layers),
            "accept_length": tau,
            "tokens_per_cycle": tau,
            "alpha": np.asarray(grid.alpha if grid.alpha is not None else acc.alpha, dtype=float),
            "per_position": list(acc.per_position) if acc.per_position and grid.alpha is None else None,
        }
        t = timing_ms(scenario, spec, _TIMINGS)
        if t is not None:
            rnd = cf.eagle3_round_ms(m, ls, t["draft_layer"], t["ar_token"], t["verify"], t["cycle_overhead"])
            add_wallclock(out, cf.WallClock(rnd, tau, t["ar_token"]), scenario, spec)
        return out
