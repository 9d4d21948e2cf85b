"""`spd validate RUNS... [--profile-from-others | --profile P] [--max-error E] -o REPORT_DIR` and
`spd validate --published [PATH]` (the published implementation's forecast table).

Leave-one-configuration-out by default (``--profile-from-others``): each run is predicted by a profile
fitted on the runs of every other configuration. Exit 1 when ``--max-error`` is exceeded, 2 on bad input.
"""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="*", help="run directories / folders of runs / trace.jsonl(.xz|.gz) files")
    p.add_argument("-o", "--out", default=None, help="report directory (report.md, scatter.svg, validation.json)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--profile-from-others", action="store_true",
                   help="leave-one-configuration-out: fit on the other configurations' runs (the default)")
    g.add_argument("--profile", default=None, help="predict every run from this profile instead")
    p.add_argument("--max-error", type=float, default=None,
                   help="fail (exit 1) if any |relative error| exceeds this fraction, e.g. 0.07")
    p.add_argument("--per-configuration", action="store_true",
                   help="apply --max-error to each configuration's mean over its repeated runs instead of to "
                        "every run (a single run is only measured to within the repeat spread)")
    p.add_argument("--uninstrumented", action="store_true",
                   help="apply --max-error to runs recorded without per-op tracing (--trace cycle) only: the wall "
                        "clock a user runs; full-trace runs, slowed 15-20%% by their tracing, are calibration "
                        "inputs and are still predicted and reported")
    p.add_argument("--min-repeats", type=int, default=1,
                   help="with --per-configuration: bound only configurations measured at least this many times "
                        "(the others are reported; one run is only known to within its repeats' spread)")
    p.add_argument("--spread", default="lognormal", choices=("lognormal", "empirical", "constant"),
                   help="latency distributions in the simulator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--published", nargs="?", const="", default=None, metavar="PATH",
                   help="print the published implementation's profile check and forecast table")


def run(args) -> int:
    from ..errors import InputError

    if args.published is not None:
        from ..calibration.published import build_published_profile, forecast_table, load_published

        if args.runs:
            raise InputError("--published takes no runs")
        data = load_published(args.published or None)
        print(forecast_table(data, build_published_profile(data)))
        return 0
    if not args.runs:
        raise InputError("give run directories to validate (or --published)")
    if args.out is None:
        raise InputError("-o/--out: report directory required")
    if args.max_error is not None and not args.max_error > 0:
        raise InputError(f"--max-error: must be > 0, got {args.max_error}")
    for flag, given in (("--per-configuration", args.per_configuration), ("--uninstrumented", args.uninstrumented)):
        if given and args.max_error is None:
            raise InputError(f"{flag}: says what --max-error bounds; give --max-error too")
    if args.min_repeats < 1 or (args.min_repeats > 1 and not args.per_configuration):
        raise InputError(f"--min-repeats: a count >= 1 that goes with --per-configuration, got {args.min_repeats}")
    from ..calibration.inputs import load_runs
    from ..calibration.profile import load_profile
    from ..calibration.report import configuration_table, table, write_report
    from ..calibration.validate import (configuration_errors, configuration_errors_line, repeat_spread,
                                        repeat_spread_line, validate_runs)

    runs = load_runs(args.runs, require_full=False)  # cycle-level runs: predicted, never fitted
    prof = load_profile(args.profile, runs[0].environment) if args.profile else None
    preds = validate_runs(runs, prof, seed=args.seed, spread=args.spread)
    print(table(preds))
    repeats = repeat_spread_line(repeat_spread(runs))
    if repeats:
        print(f"repeats: {repeats}")
    conf = configuration_errors(runs, preds)
    conf_line = configuration_errors_line(conf)
    if conf_line:
        if args.per_configuration:
            print(configuration_table(conf))
        print(f"per configuration: {conf_line}")
    cmd = "spd validate " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "spd validate"
    what, bounded = _bounded(args, runs, preds, conf)
    if args.max_error is not None and bounded["max_abs_rel_error"] is not None:
        print(f"bounded ({what}): |relative error| median {100 * bounded['median_abs_rel_error']:.1f}%, "
              f"max {100 * bounded['max_abs_rel_error']:.1f}% against --max-error {args.max_error}")
    out = write_report(args.out, preds, cmd, args.max_error, args.profile, repeats, conf, (what, bounded))
    print(f"report: {out / 'report.md'} (scatter.svg, validation.json)")
    if bounded["median_abs_rel_error"] is None:
        sys.stderr.write(f"spd validate: error: nothing to bound: no prediction of {what} (see the report)\n")
        return 1
    if args.max_error is not None and bounded["max_abs_rel_error"] > args.max_error:
        sys.stderr.write(f"spd validate: error bound exceeded ({what}): max |relative error| "
                         f"{bounded['max_abs_rel_error']:.3f} > --max-error {args.max_error}\n")
        return 1
    return 0


def _bounded(args, runs, preds, conf: dict) -> tuple[str, dict]:
    """What --max-error applies to (in words, for the report and the error line) and its error summary."""
    from ..calibration.validate import configuration_errors, error_summary

    if args.uninstrumented:
        kept = [(r, p) for r, p in zip(runs, preds) if r.trace_level == "cycle"]
        runs, preds = [r for r, _ in kept], [p for _, p in kept]
    if not args.per_configuration:
        return ("every uninstrumented run" if args.uninstrumented else "every run"), error_summary(preds)
    if args.uninstrumented or args.min_repeats > 1:  # else ``conf``, over every run, is the one to bound
        conf = configuration_errors(runs, preds, min_runs=args.min_repeats)
    level = " of the uninstrumented runs" if args.uninstrumented else ""
    times = f", those measured {args.min_repeats} times or more" if args.min_repeats > 1 else ""
    return f"each configuration's mean{level}{times}", conf
