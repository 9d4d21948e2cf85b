"""AR through an n-stage pipeline, no speculation: shows the pure cost of pipelining (SPEC.md 6).

One token at a time walks all n stages, so in layer units nothing is gained (theoretical speedup 1);
on the wall clock it loses the hops, the per-stage overhead and the controller's fixed costs.
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import add_wallclock, pipeline_stages, timing_ms, validate_pipeline
from .base import DecodingMethod, Grid

_TIMINGS = ("stage_overhead", "hop", "verify", "cycle_overhead")


@register
class ARPipeline(DecodingMethod):
    name = "ar_pipeline"
    summary = "autoregressive decoding through an n-stage pipeline (no speculation)"
    grid_axes = ("stages", "hop_ms")

    def validate(self, spec, scenario) -> None:
        validate_pipeline(spec, scenario, min_stages=1)
        timing_ms(scenario, spec, _TIMINGS)

    def label(self, spec) -> str:
        return f"ar_pipeline n={spec.stages}"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        st = pipeline_stages(spec, scenario, grid.stages, min_stages=1)
        one = np.ones(np.shape(st.n))
        out = {"theoretical_speedup": one, "accept_length": one, "tokens_per_cycle": one, "alpha": None,
               "stage_layers": list(st.split) if st.split else None}
        t = timing_ms(scenario, spec, _TIMINGS)
        if t is not None:
            per_token = cf.ar_pipeline_token_ms(st.sum_stage_ms, st.n, grid.get("hop_ms", t["hop"]), t["verify"], t["cycle_overhead"])
            add_wallclock(out, cf.WallClock(per_token, one, t["ar_token"]), scenario, spec)
        return out
