"""`spd predict [SCENARIO.json] [--json] [--list-methods]`: closed-form speedup of every method in a scenario.

Without a file it predicts the embedded default scenario (sim/data/default_scenario.json).
``--json`` prints exactly one JSON object ``{"methods": [...]}`` with the methods in file order.
"""
from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

DEFAULT_SCENARIO = "default_scenario.json"


def default_scenario_path() -> Path:
    """Path of the embedded default scenario (shipped as package data)."""
    return Path(str(resources.files("sim") / "data" / DEFAULT_SCENARIO))


def add_arguments(p) -> None:
    p.add_argument("scenario", nargs="?", help="scenario JSON file (default: the embedded default scenario)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--list-methods", action="store_true", help="list the registered decoding methods and exit")
    p.add_argument("--profile", default=None, help="hardware profile from `spd calibrate`: replaces the scenario's timings")


def run(args) -> int:
    from ..closed_form import predict_scenario
    from ..methods import all_methods
    from ..scenario import load_scenario

    if args.list_methods:
        for name, m in sorted(all_methods().items()):
            print(f"{name:12s} {m.summary}")
        return 0
    path = Path(args.scenario) if args.scenario else default_scenario_path()
    scenario = load_scenario(path)
    if getattr(args, "profile", None):  # timings from a calibrated profile (sim/calibration/apply.py)
        from ..calibration.apply import predict_with_profile

        scenario, preds = predict_with_profile(scenario, args.profile)
    else:
        preds = predict_scenario(scenario)
    if args.json:
        obj = {"methods": [p.to_json() for p in preds]}
        sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
        return 0
    print(format_table(scenario, preds, path))
    return 0


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(scenario, preds, path) -> str:
    """A readable table: one row per method; speedups are over single-device AR."""
    head = f"{scenario.name or path}  (target: {scenario.target.layers} layers"
    if scenario.timing is not None:
        head += f", single-device AR {scenario.ar_token_ms():.3g} ms/token"
    head += ")"
    cols = ("name", "theory x", "wall x", "tok/s", "cycle ms", "tok/cycle", "accept len", "alpha", "notes")
    rows = []
    for p in preds:
        notes = []
        d = p.details
        if "draft_hidden" in d:
            notes.append(("PDM hidden" if d["draft_hidden"] else "PDM exposed") + f" (slack {d['draft_slack_ms']:+.2f} ms)")
        if d.get("stage_layers") and len(set(d["stage_layers"])) > 1:
            notes.append("split " + "/".join(map(str, d["stage_layers"])))
        if d.get("tokens"):
            notes.append(f"N={d['tokens']} finite")
        if d.get("per_position"):
            notes.append("per-position acceptance")
        rows.append((p.name, _f(p.theoretical_speedup, ".2f"), _f(p.wallclock_speedup, ".2f"), _f(p.tokens_per_s, ".1f"),
                     _f(p.cycle_ms, ".3f"), _f(p.tokens_per_cycle, ".3f"), _f(p.accept_length, ".2f"), _f(p.alpha, ".3f"), "; ".join(notes)))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda r: "  ".join(x.ljust(w) if i in (0, len(cols) - 1) else x.rjust(w) for i, (x, w) in enumerate(zip(r, widths)))  # noqa: E731
    out = [head, line(cols), line(tuple("-" * w for w in widths))] + [line(r) for r in rows]
    out.append("theory x: layer-unit speedup (SPEC.md 2); wall x: tokens/s over single-device AR from timing_ms; "
               "cycle = one pipeline cycle (spd/ppsd/ar_pipeline), one draft+verify round (sd/eagle3), one token (ar)")
    return "\n".join(out)
