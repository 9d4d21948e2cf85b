#!/usr/bin/env python3
"""Where the launch-to-launch spread of repeated runs comes from: for every pipeline configuration measured more
than once (same key as `spd validate`'s repeat spread), its fastest and slowest run by tokens/s, and how much
longer the slow run's steady cycle (SPD: accept cycles; AR pipeline: decode steps) is at the median and on
average. A median that moves as much as the mean says the whole run was slower (placement, clocks); a mean that
moves alone says a few stalls.

    python scripts/repeat_spread.py traces/h100x4_s10 traces/h100x2_s10
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.calibration.inputs import load_runs  # noqa: E402
from sim.calibration.validate import repeat_key  # noqa: E402
from sim.errors import InputError  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: repeat_spread.py TRACE_DIR...", file=sys.stderr)
        return 2
    try:
        runs = load_runs(argv, require_full=False)
    except InputError as e:
        print(f"repeat_spread: error: {e}", file=sys.stderr)
        return 2
    groups: dict[tuple, list] = {}
    for r in runs:
        if r.method != "ar":
            groups.setdefault(repeat_key(r), []).append(r)
    print("| configuration | runs | tok/s fastest / slowest | slowest's median cycle | its mean cycle |")
    print("|---|---|---|---|---|")
    shares = []
    for rs in groups.values():
        if len(rs) < 2:
            continue
        fast, slow = max(rs, key=lambda r: r.tokens_per_s), min(rs, key=lambda r: r.tokens_per_s)
        event = "accept" if fast.method == "spd" else "ar"
        a, b = fast.cycle_ms.get(event, []), slow.cycle_ms.get(event, [])
        if not a or not b:
            continue
        med, mean = np.median(b) / np.median(a) - 1, np.mean(b) / np.mean(a) - 1
        spread = fast.tokens_per_s / slow.tokens_per_s - 1
        if spread > 0.03 and mean > 0:
            shares.append(med / mean)
        print(f"| {fast.label} | {len(rs)} | {fast.tokens_per_s:.1f} / {slow.tokens_per_s:.1f} (+{100 * spread:.1f}%) | "
              f"{100 * med:+.1f}% | {100 * mean:+.1f}% |")
    if shares:
        print(f"\nconfigurations spread by more than 3%: the median cycle carries {100 * np.median(shares):.0f}% of the "
              f"mean cycle's shift (median over {len(shares)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
