"""`spd reproduce [--data PATH] [--tokens N] [--json]`: regenerate the published theoretical table from
per-draft acceptance (a round trip through the predict path) and forecast held-out rows out of sample.

Logic lives in sim/reproduce.py; this module parses options and prints.
"""
from __future__ import annotations

import json
import sys


def add_arguments(p) -> None:
    p.add_argument("--data", help="published results JSON (default: ../shared/data/published_spd.json beside the repository)")
    p.add_argument("--tokens", type=int, default=512,
                   help="generation length N for SPD/PPSD's finite-length count K (default 512 = published max_new_tokens; 0 = steady state)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--round-trip-table", action="store_true", help="also print every round-trip entry (alpha behind each number)")


def run(args) -> int:
    from ..errors import InputError
    from ..reproduce import forecast, load_published, round_trip, summarize, to_json, verdict

    if args.tokens != 0 and args.tokens < 3:
        raise InputError(f"--tokens: must be 0 (steady state) or >= 3, got {args.tokens}")
    tokens = args.tokens or None
    data, path = load_published(args.data)
    rt = round_trip(data, tokens)
    fc = forecast(data, tokens)
    if args.json:
        sys.stdout.write(json.dumps(to_json(rt, fc, path, tokens), allow_nan=False) + "\n")
        return 0
    worst = max(abs(e.predicted - e.published) for e in rt)
    print(f"source: {path}")
    print(f"accounting: SPD/PPSD {'finite-length K with N=' + str(tokens) if tokens else 'steady state'}; EAGLE-3 L_s=1")
    print(f"(a) round trip: {len(rt)} published theoretical numbers -> per-draft alpha -> spd predict path -> "
          f"max |error| {worst:.2e}")
    if args.round_trip_table:
        print(format_round_trip(rt))
    print()
    print("(b) out-of-sample forecast (theoretical speedup of the held-out row)")
    print(format_forecast(fc))
    print()
    print(format_summary(summarize(fc)))
    print()
    for line in verdict(fc):
        print(line)
    return 0


def format_round_trip(rt) -> str:
    lines = [f"{'mix':17s} {'model':11s} {'T':>3s} {'method':6s} {'config':10s} {'dataset':9s} {'published':>9s} {'alpha':>7s} {'predicted':>9s}"]
    for e in rt:
        lines.append(f"{e.training_mix:17s} {e.model:11s} {e.temperature:3g} {e.method:6s} {e.config:10s} {e.dataset:9s} "
                     f"{e.published:9.2f} {e.alpha:7.4f} {e.predicted:9.4f}")
    return "\n".join(lines)


def format_forecast(fc) -> str:
    lines = [f"{'mix':17s} {'model':11s} {'T':>3s} {'method':6s} {'held out':9s} {'dataset':9s} {'published':>9s} "
             f"{'predicted':>9s} {'error':>7s} {'rel':>7s} {'const-acc':>9s} {'rel':>7s}  fit"]
    for e in fc:
        if e.method == "eagle3":
            fit = f"a1={e.params['a1']:.3f} d={e.params['d']:.3f}"
        else:
            fit = f"alpha16={e.params['alpha']:.3f} slope={e.params['slope_per_doubling']:+.4f}"
        lines.append(f"{e.training_mix:17s} {e.model:11s} {e.temperature:3g} {e.method:6s} {e.held_out:9s} {e.dataset:9s} "
                     f"{e.published:9.2f} {e.predicted:9.2f} {e.error:+7.2f} {e.error / e.published:+7.1%} "
                     f"{e.baseline:9.2f} {e.baseline_error / e.published:+7.1%}  {fit}")
    return "\n".join(lines)


def format_summary(summary) -> str:
    lines = [f"{'method':6s} {'rows':>4s} {'median |err|':>12s} {'worst |err|':>11s} {'median |rel|':>12s} {'worst |rel|':>11s}"
             f"   {'const-acc median |rel|':>22s} {'worst':>6s} {'mean signed':>11s}"]
    for s in summary:
        lines.append(f"{s.method:6s} {s.count:4d} {s.median_abs:12.3f} {s.worst_abs:11.3f} {s.median_rel:12.1%} {s.worst_rel:11.1%}"
                     f"   {s.baseline_median_rel:22.1%} {s.baseline_worst_rel:6.1%} {s.baseline_mean_signed_rel:+11.1%}")
    return "\n".join(lines)
