"""`spd calibrate TRACES... -o profile.json` | `spd calibrate --published [PATH] -o profile.json`.

Fits a hardware/software profile (docs/calibration.md) from executor traces (run directories, folders of
them, or trace files, plain or xz / gzip compressed). ``--published`` builds the published implementation's
profile from its cycle breakdowns and two wall-clock speedups (shared/data/published_spd.json) instead.
"""
from __future__ import annotations

import json


def add_arguments(p) -> None:
    p.add_argument("traces", nargs="*", help="run directories / folders of runs / trace.jsonl(.xz|.gz) files")
    p.add_argument("-o", "--out", required=True, help="profile JSON to write")
    p.add_argument("--published", nargs="?", const="", default=None, metavar="PATH",
                   help="build the published implementation's profile (default PATH: the shared published_spd.json)")
    p.add_argument("--self-check", action="store_true",
                   help="also predict each run from a profile of the other configurations (as `spd validate "
                        "--profile-from-others`) and store the errors in the profile: predictions made with it "
                        "then say how far off it was on its own runs")


def run(args) -> int:
    from ..errors import InputError

    if args.published is not None:
        from ..calibration.published import build_published_profile, load_published

        if args.traces:
            raise InputError("--published takes no traces")
        data = load_published(args.published or None)
        prof = build_published_profile(data)
        prof.save(args.out)
        inst = prof.instrumentation
        print(f"published profile -> {args.out}: compute factor {inst['compute_factor']:.4f}, "
              f"fixed-cost factor {inst['fixed_factor']:.4f} (wall-clock / instrumented)")
        return 0
    if not args.traces:
        raise InputError("give at least one trace (run directory) or --published")
    from ..calibration.fit import fit_profile
    from ..calibration.inputs import load_runs
    from ..calibration.validate import self_check, self_check_line

    runs = load_runs(args.traces, require_full=False)  # cycle-level twins of full traces: the trace overhead
    prof = fit_profile(runs)
    if args.self_check:
        prof.source["self_check"] = self_check(runs)
    prof.save(args.out)
    st = prof.stage
    print(f"profile of {len(prof.source['traces'])} run(s), {len(prof.source['configurations'])} configuration(s) "
          f"-> {args.out}")
    for key, v in st.per_shape_layer_ms.items():
        print(f"  layer {key}: {v:.4f} ms")
    for key, v in prof.ar_step_ms_by_shape.items():
        print(f"  AR per token {key}: {v:.4f} ms (measured; the denominator of its speedups)")
    print(f"  stage: a(d) = {st.a0_ms:.4f} + {st.a1_ms_per_mparam:.5f} ms/Mparam; b = {st.b_ms:.4f} ms; "
          f"contention kappa = {st.kappa:.3f}; forward CV {st.spread.cv:.3f}")
    if st.kappa_by_method:
        print("  contention kappa by method (per further stage on the device): " + ", ".join(
            f"{k} {v:.3f}" + (f" + {st.kappa_bw_by_method[k]:.3f}/(TB/s)" if k in st.kappa_bw_by_method else "")
            for k, v in st.kappa_by_method.items()))
    for meth, c in st.untraced_kappa_per_ms_by_method.items():
        lo, hi = st.untraced_forward_range_ms.get(meth, [float("nan")] * 2)
        print(f"  uninstrumented contention {meth}: kappa = {c:.3f}/ms x the forward's time alone (median of the "
              f"configurations; forwards {lo:.2f}-{hi:.2f} ms): " + ", ".join(
                  f"{f['configuration']} {f['c_per_ms']:.3f}" + (" (capped)" if f["capped"] else "")
                  for f in prof.source.get("untraced_contention", []) if f["method"] == meth))
    if st.rank0_overlap_by_method:
        print("  beside rank 0 (rho x its concurrent work) by method: " + ", ".join(
            f"{k} {v:.3f}" for k, v in st.rank0_overlap_by_method.items()))
    for meth, t in prof.by_method.items():
        parts = [f"control hop {t.control_hop.mean_ms:.4f}" if t.control_hop else "",
                 f"send {t.send_ms.mean_ms:.4f}" if t.send_ms else "",
                 f"collect {t.collect.mean_ms:.4f}" if t.collect else "",
                 f"stage-1 start floor {t.stage1_start_floor.mean_ms:.4f}" if t.stage1_start_floor else "",
                 f"stages 2..n start {t.stage_start.mean_ms:.4f} after the broadcast" if t.stage_start else "",
                 f"head {t.head(const=1.0, head_mparams=0.0):.4f} + {t.head.coef.get('head_mparams', 0.0):.5f}/Mparam"
                 if t.head else ""]
        parts += [f"report {k} {d.mean_ms:.4f}" for k, d in t.report.items()]
        parts += [f"hop {k} {d.mean_ms:.4f}" for k, d in t.hops.items()]
        print(f"  {meth} ({t.runs} run(s)): " + ", ".join(x for x in parts if x) + " ms")
    print("  hops: " + ", ".join(f"{k} {d.mean_ms:.4f} ms (cv {d.cv:.2f})" for k, d in prof.hops.items()))
    print(f"  control {json.dumps(prof.control.coef)}; verify {json.dumps(prof.verify.coef)}; "
          f"bookkeeping {prof.bookkeeping.mean_ms:.4f} ms; flush {prof.flush.mean_ms:.4f} ms")
    if prof.trace_overhead_ms:
        print(f"  trace overhead (--trace full over cycle level, {prof.source['trace_overhead_pairs']} twin pair(s)): "
              + "; ".join(f"{m} " + ", ".join(f"{e} {x:.3f}" for e, x in sorted(d.items()))
                          for m, d in prof.trace_overhead_ms.items()) + " ms per cycle (*_per_rank: per rank on the "
              "AR pipeline's serial path, n + 1 of them)")
    for note in prof.source.get("notes", []):
        print(f"  note: {note}")
    if "self_check" in prof.source:
        print(f"  self-check: {self_check_line(prof.source['self_check'])}")
    return 0
