"""`spd simulate [SCENARIO.json]`: discrete-event simulation of every method of a scenario.

Prints a table (or, with ``--json``, exactly one JSON object ``{"methods": [...]}``), next to the
closed form's wall-clock speedup for comparison. ``--trace out.json`` writes a Chrome/Perfetto
timeline of the first ``--trace-cycles`` cycles of each method; ``--records out.csv`` the per-cycle
records. Without a file it simulates the embedded default scenario. See docs/simulator.md.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ..errors import InputError


def add_arguments(p) -> None:
    p.add_argument("scenario", nargs="?", help="scenario JSON file (default: the embedded default scenario)")
    p.add_argument("--tokens", type=int, default=20000, help="decoded tokens per method (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output; default 0)")
    p.add_argument("--method", action="append", metavar="NAME",
                   help="simulate only methods whose name or method is NAME (repeatable)")
    p.add_argument("--model", choices=("auto", "fast", "dataflow"), default="auto",
                   help="auto: the cheapest exact model (default); fast: the exact recurrence; dataflow: SimPy processes")
    p.add_argument("--trace", metavar="OUT.json", help="write a Chrome-trace/Perfetto timeline (runs the dataflow model)")
    p.add_argument("--trace-cycles", type=int, default=500, metavar="K", help="cycles per method kept in the trace (default 500)")
    p.add_argument("--records", metavar="OUT.csv", help="write the per-cycle records of every method (CSV)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--profile", default=None, help="hardware profile from `spd calibrate`: replaces the scenario's timings")


def _select(scenario, names: list[str] | None):
    from ..methods import get_method

    specs = list(scenario.methods)
    if not names:
        return specs
    label = lambda s: s.name or get_method(s.method).label(s)  # noqa: E731
    chosen = [s for s in specs if s.method in names or label(s) in names]
    if not chosen:
        known = ", ".join(sorted({s.method for s in specs} | {label(s) for s in specs}))
        raise InputError(f"--method: no method of {scenario.source} matches {', '.join(names)} (available: {known})")
    return chosen


def run(args) -> int:
    from ..des import TraceRecorder, simulate, write_trace
    from ..io import atomic_write_text
    from ..methods import get_method
    from ..scenario import load_scenario
    from .predict import default_scenario_path

    if args.tokens < 1:
        raise InputError(f"--tokens: expected an integer >= 1, got {args.tokens}")
    if args.trace_cycles < 1:
        raise InputError(f"--trace-cycles: expected an integer >= 1, got {args.trace_cycles}")
    path = Path(args.scenario) if args.scenario else default_scenario_path()
    scenario = load_scenario(path)
    cal = {}
    if getattr(args, "profile", None):  # per method: calibrated scenario + cost override (sim/calibration/apply.py)
        from ..calibration.apply import calibrated

        cal = {spec.index: c for spec, c in zip(scenario.methods, calibrated(scenario, args.profile))}
    if not cal and scenario.timing is None:
        raise InputError(f"{scenario.source}: timing_ms: missing; the simulator needs timings")
    results, preds, recorders = [], [], []
    for i, spec in enumerate(_select(scenario, args.method)):
        rec = None
        if args.trace:
            rec = TraceRecorder(pid=i, label=f"{spec.name or get_method(spec.method).label(spec)}", max_cycles=args.trace_cycles)
            recorders.append(rec)
        scen, costs = scenario, None
        if cal:
            scen, costs = cal[spec.index].scenario, cal[spec.index].costs
            spec = scen.methods[0]
        results.append(simulate(scen, spec, args.tokens, seed=args.seed, model=args.model, costs=costs, trace=rec))
        preds.append(get_method(spec.method).predict(spec, scen))
    if cal:  # the table header reads the AR step from a timed scenario
        scenario = cal[0].scenario
    if args.trace:
        write_trace(args.trace, recorders)
    if args.records:
        atomic_write_text(args.records, _records_csv(results))
    if args.json:
        out = []
        for r, p in zip(results, preds):
            d = r.to_json()
            d["closed_form"] = {"wallclock_speedup": p.wallclock_speedup, "tokens_per_s": p.tokens_per_s,
                                "accept_length": p.accept_length, "cycle_ms": p.cycle_ms}
            out.append(d)
        obj = {"scenario": str(path), "tokens": args.tokens, "seed": args.seed, "methods": out}
        sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
        return 0
    print(format_table(scenario, path, results, preds, args))
    return 0


def _records_csv(results) -> str:
    """Per-cycle records of every method, one CSV with the method's name in the first column."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "cycle", "start_ms", "end_ms", "duration_ms", "in_flight", "outcome", "committed"])
    for r in results:
        rec = r.records
        for i, row in enumerate(zip(rec.start_ms.tolist(), rec.end_ms.tolist(), rec.in_flight.tolist(),
                                    rec.outcome.tolist(), rec.committed.tolist()), start=1):
            s, e, f, o, c = row
            w.writerow([r.name, i, f"{s:.6f}", f"{e:.6f}", f"{e - s:.6f}", f, o, c])
    return buf.getvalue()


def format_table(scenario, path, results, preds, args) -> str:
    head = (f"{scenario.name or path}: {args.tokens} decoded tokens per method, seed {args.seed}; "
            f"single-device AR {scenario.ar_token_ms():.3g} ms/token")
    cols = ("name", "model", "tok/s", "speedup", "closed form", "L_acc", "cycles K", "rejects R", "cycle ms", "busiest device", "max bubble ms")
    rows = []
    for r, p in zip(results, preds):
        dev, frac = max(r.busy_fraction.items(), key=lambda kv: kv[1]) if r.busy_fraction else ("-", 0.0)
        bub = max(r.bubble_ms.values()) if r.bubble_ms else 0.0
        rows.append((r.name, r.model, f"{r.tokens_per_s:.1f}", f"{r.speedup:.3f}",
                     "-" if p.wallclock_speedup is None else f"{p.wallclock_speedup:.3f}", f"{r.accept_length:.3f}",
                     str(r.cycles), str(r.rejects), f"{r.mean_cycle_ms:.3f}", f"{dev} {100 * frac:.0f}%", f"{bub:.1f}"))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda row: "  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths)))  # noqa: E731
    out = [head, line(cols), line(tuple("-" * w for w in widths))] + [line(row) for row in rows]
    out.append("speedup: simulated tokens/s over single-device AR; closed form: `spd predict` (steady state); "
               "L_acc: pooled n*N/K (pipelines), tokens per round (sd/eagle3); cycle: pipeline cycle, draft+verify round, or AR step")
    for r in results:
        out.append(f"  {r.name}: {r.model} model ({r.model_reason})" + "".join(f"; note: {n}" for n in r.notes))
    if args.trace:
        out.append(f"trace: {args.trace} (open in https://ui.perfetto.dev)")
    if args.records:
        out.append(f"records: {args.records}")
    return "\n".join(out)
