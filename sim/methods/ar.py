"""Single-device autoregressive decoding: the denominator of every speedup (speedup 1 by definition)."""
from __future__ import annotations

import numpy as np

from .. import closed_form as cf
from . import register
from ._common import add_wallclock, timing_ms
from .base import DecodingMethod, Grid


@register
class AR(DecodingMethod):
    name = "ar"
    summary = "autoregressive decoding on one device (one full forward per token)"
    grid_axes = ()

    def validate(self, spec, scenario) -> None:
        timing_ms(scenario, spec, ())  # needs timing_ms.ar_token (or .layer) when timings are given

    def label(self, spec) -> str:
        return "ar"

    def predict_grid(self, spec, scenario, grid: Grid) -> dict:
        out = {"theoretical_speedup": np.float64(1.0), "accept_length": np.float64(1.0), "tokens_per_cycle": np.float64(1.0), "alpha": None}
        t = timing_ms(scenario, spec, ())
        if t is not None:
            add_wallclock(out, cf.WallClock(np.float64(t["ar_token"]), np.float64(1.0), t["ar_token"]), scenario, spec)
        return out
