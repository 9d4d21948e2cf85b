"""Pipelined parallel speculative decoding (PPSD, the paper's baseline): the same pipeline and
accept/flush rule as SPD, but its L_s-layer draft runs *after* each pipeline step, serially.

Theoretical: r·L / (largest stage + L_s) = L_acc·L/(L_s·n + L) for an even split (SPEC.md 2).
Wall clock: cycle = cycle_overhead + slowest stage + hop + L_s·draft_layer + verify.
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import add_wallclock, pipeline_stages, require_int, single_draft_alpha, timing_ms, validate_pipeline
from .base import DecodingMethod, Grid
from .spd import finite_tokens

_TIMINGS = ("draft_layer", "stage_overhead", "hop", "verify", "cycle_overhead")


@register
class PPSD(DecodingMethod):
    name = "ppsd"
    summary = "pipelined speculative decoding with a serial draft after each pipeline step"
    grid_axes = ("alpha", "stages", "hop_ms", "draft_layers", "tokens")
    extra_keys = frozenset({"tokens"})

    def validate(self, spec, scenario) -> None:
        validate_pipeline(spec, scenario, min_stages=2)
        require_int(scenario, spec, "draft_layers", 1)
        finite_tokens(spec, scenario)
        scenario.acceptance_for(spec)
        timing_ms(scenario, spec, _TIMINGS)

    def label(self, spec) -> str:
        return f"ppsd n={spec.stages} Ls={spec.draft_layers}"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        st = pipeline_stages(spec, scenario, grid.stages, min_stages=2)
        alpha = grid.get("alpha", single_draft_alpha(scenario.acceptance_for(spec)))
        ls = grid.get("draft_layers", spec.draft_layers)
        tokens = grid.get("tokens", finite_tokens(spec, scenario))
        r = cf.spd_tokens_per_cycle(alpha, st.n, tokens)
        out = {
            "theoretical_speedup": cf.ppsd_theoretical_speedup(alpha, st.n, scenario.target.layers, st.largest_layers, ls, tokens),
            "accept_length": np.asarray(st.n) * r,
            "tokens_per_cycle": r,
            "alpha": np.asarray(alpha, dtype=float),
            "stage_layers": list(st.split) if st.split else None,
            "tokens": tokens,
        }
        t = timing_ms(scenario, spec, _TIMINGS)
        if t is not None:
            cycle = cf.ppsd_cycle_ms(st.max_stage_ms, grid.get("hop_ms", t["hop"]), np.asarray(ls) * t["draft_layer"],
                                     t["verify"], t["cycle_overhead"])
            add_wallclock(out, cf.WallClock(cycle, r, t["ar_token"]), scenario, spec)
        return out
