"""Speculative Pipeline Decoding (SPEC.md 1): n stages, a one-token pipeline draft module (PDM)
running concurrently with the stage forwards.

Theoretical (layer units): r·L / max(largest stage, L_s), = L_acc for an even split with the PDM
hidden. Wall clock: cycle = cycle_overhead + max(L_s·draft_layer, slowest stage + hop) + verify,
r committed tokens per cycle (steady state, or N/E[K] with the method key ``tokens``).
"""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from ..scenario import _int
from . import register
from ._common import add_wallclock, err, pipeline_stages, require_int, single_draft_alpha, timing_ms, validate_pipeline
from .base import DecodingMethod, Grid

_TIMINGS = ("draft_layer", "stage_overhead", "hop", "verify", "cycle_overhead")


def finite_tokens(spec, scenario) -> int | None:
    """The optional ``tokens`` key (N committed tokens incl. the prefill token, >= 3): finite-length accounting."""
    if spec.extra.get("tokens") is None:
        return None
    return _int(spec.extra["tokens"], scenario.source, f"{spec.field_prefix}.tokens", minimum=3)


@register
class SPD(DecodingMethod):
    name = "spd"
    summary = "speculative pipeline decoding: n stages + a concurrent one-token draft module"
    grid_axes = ("alpha", "stages", "hop_ms", "draft_layers", "tokens")
    extra_keys = frozenset({"tokens"})

    def validate(self, spec, scenario) -> None:
        validate_pipeline(spec, scenario, min_stages=2)
        require_int(scenario, spec, "draft_layers", 1)
        if spec.width != 1:
            raise err(scenario, spec, "width", f"the closed form models width 1 (one draft per cycle), got {spec.width}")
        finite_tokens(spec, scenario)
        scenario.acceptance_for(spec)
        timing_ms(scenario, spec, _TIMINGS)

    def label(self, spec) -> str:
        return f"spd n={spec.stages} Ls={spec.draft_layers}"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        st = pipeline_stages(spec, scenario, grid.stages, min_stages=2)
        alpha = grid.get("alpha", single_draft_alpha(scenario.acceptance_for(spec)))
        ls = grid.get("draft_layers", spec.draft_layers)
        tokens = grid.get("tokens", finite_tokens(spec, scenario))
        r = cf.spd_tokens_per_cycle(alpha, st.n, tokens)
        out = {
            "theoretical_speedup": cf.spd_theoretical_speedup(alpha, st.n, scenario.target.layers, st.largest_layers, ls, tokens),
            "accept_length": np.asarray(st.n) * r,
            "tokens_per_cycle": r,
            "alpha": np.asarray(alpha, dtype=float),
            "pipeline_factor": cf.pipeline_factor(scenario.target.layers, st.largest_layers),
            "stage_layers": list(st.split) if st.split else None,
            "tokens": tokens,
        }
        t = timing_ms(scenario, spec, _TIMINGS)
        if t is not None:
            hop = grid.get("hop_ms", t["hop"])
            draft_ms = np.asarray(ls) * t["draft_layer"]
            cycle = cf.spd_cycle_ms(st.max_stage_ms, hop, draft_ms, t["verify"], t["cycle_overhead"])
            add_wallclock(out, cf.WallClock(cycle, r, t["ar_token"]), scenario, spec)
            slack = st.max_stage_ms + np.asarray(hop) - draft_ms  # > 0: PDM finishes before the stages do
            out["draft_slack_ms"] = slack
            out["draft_hidden"] = slack >= 0
        return out
