"""`spd split SCENARIO --profile PROFILE`: the stage split a calibrated profile predicts to be fastest.

For every pipeline method of the scenario (spd, ppsd, ar_pipeline with stages >= 2; its placement says which
stage shares the controller's GPU), the balanced split and the best one found (sim/calibration/split_search.py),
with predicted decode tokens/s and the value to pass to ``spd run --stage-split``. ``--json`` prints one
object ``{"methods": [...]}``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InputError


def add_arguments(p) -> None:
    p.add_argument("scenario", help="scenario JSON file (target, methods with stages and placement, acceptance)")
    p.add_argument("--profile", required=True, help="hardware profile from `spd calibrate`")
    p.add_argument("--tokens", type=int, default=2000, help="decoded tokens simulated per candidate (default 2000)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args) -> int:
    from ..calibration.apply import load_profile_here
    from ..calibration.split_search import best_splits
    from ..scenario import load_scenario

    if args.tokens < 1:
        raise InputError(f"--tokens: expected an integer >= 1, got {args.tokens}")
    scenario = load_scenario(Path(args.scenario))
    choices = best_splits(load_profile_here(args.profile), scenario, tokens=args.tokens)
    if args.json:
        sys.stdout.write(json.dumps({"methods": [c.to_json() for c in choices]}, allow_nan=False) + "\n")
        return 0
    print(f"{scenario.name or args.scenario} + profile {args.profile}: predicted decode tokens/s (simulator, "
          f"{args.tokens} tokens, constant spread)")
    for c in choices:
        print(f"  {c.name} ({c.method}, n={c.stages}): balanced {'/'.join(map(str, c.balanced))} "
              f"{c.balanced_tokens_per_s:.1f} tok/s; best {'/'.join(map(str, c.best))} {c.best_tokens_per_s:.1f} "
              f"tok/s ({100 * c.gain:+.1f} %, {c.evaluated} splits simulated); spd run --stage-split "
              f"{c.stage_split_arg}")
    # checked on 4x H100, qwen3-4b n=4 (results/h100x4/executor_s10/README.md, three interleaved repeats of 8 x 128
    # tokens): 8/14/8/6 +3.6% (predicted +4.5%), 7/9/9/11 -7.8% (-6.2%), but the proposal 8/12/9/7 -1.3% (+4.8%)
    print("note: split forecasts are rough: on 4x H100 they ranked the balanced split against a better and a worse "
          "one right, but over-stated the proposed split's gain by ~6% (docs/calibration.md, \"Which split\"); "
          "measure the proposal against the balanced split, repeated and interleaved, before relying on it")
    return 0
