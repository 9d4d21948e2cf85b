"""SPD with speculative control (``spd run --speculative-control``): rank 0 broadcasts the next cycle's GO
right after the draft forward, before it verifies, so the stages go from cycle to cycle without waiting for
rank 0's receive, head and verify. A reject then costs n cycles (the speculative one is wasted) instead of n-1.

Theoretical (layer units): r_spec·L / max(largest stage, L_s), r_spec = 1 / (1 + n(1-alpha)).
Wall clock: cycle = max(slowest stage, (slowest stage + n·hop + rank 0's work) / 2, rank 0's work), rank 0's work =
cycle_overhead + L_s·draft_layer + verify (``sim.closed_form.spd_speculative_cycle_ms``); r_spec tokens per
cycle. The discrete-event model is ``sim/des/speculative.py``.
"""
from __future__ import annotations

from .. import closed_form as cf
from . import register
from .spd import SPD


@register
class SPDSpeculative(SPD):
    name = "spd_speculative"
    summary = "SPD whose controller sends the next GO before verifying (a reject costs n cycles)"
    theoretical_speedup = staticmethod(cf.spd_speculative_theoretical_speedup)
    cycle_ms = staticmethod(cf.spd_speculative_cycle_ms)
    tokens_per_cycle = staticmethod(cf.spd_speculative_tokens_per_cycle)

    def cycle_time(self, st, hop_ms, draft_ms, t):
        return self.cycle_ms(st.max_stage_ms, hop_ms, draft_ms, t["verify"], t["cycle_overhead"], st.n)

    def label(self, spec) -> str:
        return f"spd speculative-control n={spec.stages} Ls={spec.draft_layers}"
