"""Vanilla speculative decoding (Leviathan et al. 2023): a separate draft model proposes gamma tokens
at c (= cost_ratio) times the cost of a target step each; one target forward verifies them.

Theoretical: E[tokens]/(gamma·c + 1), E[tokens] = (1 - alpha^(gamma+1))/(1 - alpha) (or the
per-position chain sum). Wall clock: round = cycle_overhead + ar_token·(1 + gamma·c) + verify.
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import add_wallclock, chain_tokens, err, require_int, timing_ms
from .base import DecodingMethod, Grid

_TIMINGS = ("verify", "cycle_overhead")


@register
class SD(DecodingMethod):
    name = "sd"
    summary = "vanilla speculative decoding with a separate draft model (Leviathan et al. 2023)"
    grid_axes = ("alpha", "gamma")

    def validate(self, spec, scenario) -> None:
        require_int(scenario, spec, "gamma", 1)
        if spec.cost_ratio is None:
            raise err(scenario, spec, "cost_ratio", "required for method 'sd' (draft step cost / target step cost)")
        scenario.acceptance_for(spec)
        timing_ms(scenario, spec, _TIMINGS)

    def label(self, spec) -> str:
        return f"sd g={spec.gamma} c={spec.cost_ratio:g}"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        acc = scenario.acceptance_for(spec)
        g = grid.get("gamma", spec.gamma)
        tokens = cf.leviathan_expected_tokens(grid.alpha, g) if grid.alpha is not None else chain_tokens(acc, g)
        out = {
            "theoretical_speedup": cf.sd_theoretical_speedup(tokens, g, spec.cost_ratio),
            "accept_length": tokens,
            "tokens_per_cycle": tokens,
            "alpha": np.asarray(grid.alpha if grid.alpha is not None else acc.alpha, dtype=float),
        }
        t = timing_ms(scenario, spec, _TIMINGS)
        if t is not None:
            rnd = cf.sd_round_ms(g, spec.cost_ratio, t["ar_token"], t["verify"], t["cycle_overhead"])
            add_wallclock(out, cf.WallClock(rnd, tokens, t["ar_token"]), scenario, spec)
        return out
