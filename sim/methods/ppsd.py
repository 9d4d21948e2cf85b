"""Pipelined parallel speculative decoding (PPSD, the paper's baseline): the same pipeline and
accept/flush rule as SPD, but its L_s-layer draft runs *after* each pipeline step, serially.

Theoretical: r·L / (largest stage + L_s) = L_acc·L/(L_s·n + L) for an even split (SPEC.md 2).
Wall clock: cycle = cycle_overhead + slowest stage + hop + L_s·draft_layer + verify.
"""
from __future__ import annotations

from .. import closed_form as cf
from . import register
from ._common import PipelinedDraftMethod


@register
class PPSD(PipelinedDraftMethod):
    name = "ppsd"
    summary = "pipelined speculative decoding with a serial draft after each pipeline step"
    theoretical_speedup = staticmethod(cf.ppsd_theoretical_speedup)
    cycle_ms = staticmethod(cf.ppsd_cycle_ms)

    def label(self, spec) -> str:
        return f"ppsd n={spec.stages} Ls={spec.draft_layers}"
