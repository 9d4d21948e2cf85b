"""Speculative Pipeline Decoding (SPEC.md 1): n stages, a one-token pipeline draft module (PDM)
running concurrently with the stage forwards.

Theoretical (layer units): r·L / max(largest stage, L_s), = L_acc for an even split with the PDM
hidden. Wall clock: cycle = cycle_overhead + max(L_s·draft_layer, slowest stage + hop) + verify,
r committed tokens per cycle (steady state, or N/E[K] with the method key ``tokens``).
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import PipelinedDraftMethod, Stages, err


@register
class SPD(PipelinedDraftMethod):
    name = "spd"
    summary = "speculative pipeline decoding: n stages + a concurrent one-token draft module"
    theoretical_speedup = staticmethod(cf.spd_theoretical_speedup)
    cycle_ms = staticmethod(cf.spd_cycle_ms)

    def validate_extra(self, spec, scenario) -> None:
        if spec.width != 1:
            raise err(scenario, spec, "width", f"the closed form models width 1 (one draft per cycle), got {spec.width}")

    def label(self, spec) -> str:
        return f"spd n={spec.stages} Ls={spec.draft_layers}"

    def extra_outputs(self, st: Stages, scenario) -> dict:
        return {"pipeline_factor": cf.pipeline_factor(scenario.target.layers, st.largest_layers)}

    def add_cycle_outputs(self, out: dict, st: Stages, hop_ms, draft_ms) -> None:
        slack = st.max_stage_ms + np.asarray(hop_ms) - draft_ms  # > 0: PDM finishes before the stages do
        out["draft_slack_ms"] = slack
        out["draft_hidden"] = slack >= 0
