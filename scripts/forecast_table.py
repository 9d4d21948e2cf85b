#!/usr/bin/env python3
"""The multi-GPU forecast table of docs/multi-gpu-plan.md: every method of the x4 / x8 scenario files, predicted
(closed form) and simulated from a calibrated profile, as one markdown table.

    python scripts/forecast_table.py --profile profiles/h100x2_full_traces.json [--tokens 20000] [SCENARIO ...]

It runs ``spd predict --json`` and ``spd simulate --json`` (this repository's CLI, in-process) on each file and
prints a row per method: theoretical speedup, closed-form ms/token and wall-clock speedup, simulated tokens/s,
ms/token and speedup, simulated mean cycle. Speedups are over single-GPU AR of the same shape.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT = ["scenarios/h100x4_n4.json", "scenarios/h100x4_n4_llama-3.1-8b.json", "scenarios/h100x8_n8.json",
           "scenarios/h100x8_n8_llama-3.1-8b.json"]


def _cli_json(args: list[str]) -> dict:
    from sim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    if rc not in (0, None):
        raise SystemExit(f"spd {' '.join(args)}: exit {rc}: {err.getvalue().strip()}")
    return json.loads(out.getvalue())


def rows(scenario: str, profile: str, tokens: int, seed: int) -> list[str]:
    machine = Path(scenario).stem.split("_")[0].replace("h100", "")
    target = (json.loads(Path(scenario).read_text()).get("target") or {}).get("name")
    prefix = f"{target}_" if target else ""
    cf = {m["name"]: m for m in _cli_json(["predict", scenario, "--profile", profile, "--json"])["methods"]}
    sim = _cli_json(["simulate", scenario, "--profile", profile, "--tokens", str(tokens), "--seed", str(seed),
                     "--json"])["methods"]
    out = []
    for s in sim:
        c = cf[s["name"]]
        out.append(f"| {machine}: `{prefix}{s['name']}` | {c['theoretical_speedup']:.2f} | {1000 / c['tokens_per_s']:.2f}, "
                   f"{c['wallclock_speedup']:.3f} | {s['tokens_per_s']:.1f}, {1000 / s['tokens_per_s']:.2f}, "
                   f"{s['speedup']:.3f} | {s['mean_cycle_ms']:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="*", default=DEFAULT)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    print("| machine / run (executor_matrix name) | theory x | closed form: ms/token, wall x | "
          "simulator: tok/s, ms/token, speedup | cycle ms (sim) |")
    print("|---|---|---|---|---|")
    for f in a.scenarios:
        for line in rows(f, a.profile, a.tokens, a.seed):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
