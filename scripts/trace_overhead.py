#!/usr/bin/env python3
"""What `--trace full` costs per cycle: for every configuration measured at both trace levels, the median
steady cycle (SPD: accept cycles; AR pipeline: decode steps) of the full trace minus that of its cycle-level
twin, in ms and as a fraction of the median stage forward. This is the term `spd calibrate` takes off
(profile `trace_overhead_ms`, one median per method and cycle event), so its spread across configurations
bounds how well a profile fitted on full traces predicts uninstrumented runs.

    python scripts/trace_overhead.py traces/h200x4 traces/h100x4_2gpu_s8 traces/h100x2_shared_s11
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.calibration.inputs import load_runs  # noqa: E402
from sim.errors import InputError  # noqa: E402

MIN_CYCLES = 10


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: trace_overhead.py TRACE_DIR...", file=sys.stderr)
        return 2
    try:
        sets = [(tset, load_runs([tset], require_full=False)) for tset in argv]
    except InputError as e:
        print(f"trace_overhead: error: {e}", file=sys.stderr)
        return 2
    print("| trace set | run | cycle-level ms | full ms | overhead ms | / stage forward |")
    print("|---|---|---|---|---|---|")
    for tset, runs in sets:
        full = {r.config_key: r for r in runs if r.method != "ar" and r.trace_level == "full"}
        for r in runs:
            if r.method == "ar" or r.trace_level == "full" or r.config_key not in full:
                continue
            twin = full[r.config_key]
            event = "ar" if r.method == "ar_pipeline" else "accept"
            xs, ys = r.cycle_ms.get(event, []), twin.cycle_ms.get(event, [])
            if len(xs) < MIN_CYCLES or len(ys) < MIN_CYCLES or not twin.stage:
                continue
            d = float(np.median(ys) - np.median(xs))
            stage = float(np.median([s.ms for s in twin.stage]))
            print(f"| {Path(tset).name} | {r.label} | {np.median(xs):.3f} | {np.median(ys):.3f} | {d:+.3f} | "
                  f"{d / stage:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
