"""Regression bounds for calibration on the committed GPU traces. A change to the model that moves these bounds
should be a conscious one.

The first set is session 8's: the `x2` plan (scripts/gpu/executor_matrix.py) with the current executor on 2 GPUs of
a 4x H100 host, 41 runs (n=2 on two GPUs at both trace levels, n=3/4 with two stages on a GPU, the headline
variants). Its runs were recorded after session 8's model changes were designed on the H200 sets, so they are the
out-of-sample check of that model. (The first runtime's set, traces/h100x2_v1, and the 2x H200 set are in git
history since session 8; session 3's 2x H100 set, traces/h100x2, since session 9: restore it with
`git checkout d4a0660 -- traces/h100x2`.) The second is session 9's: 4 GPUs of two other 4x H100 hosts, never seen by
a profile, forecast from the first.
"""
from pathlib import Path

import pytest

from sim.calibration.fit import fit_profile
from sim.calibration.inputs import load_runs
from sim.calibration.validate import error_summary, validate_runs

S8 = Path(__file__).parents[1] / "traces" / "h100x4_2gpu_s8"
SPEC = Path(__file__).parents[1] / "traces" / "h100x4_2gpu_spec"


def _s8_profile_runs():
    """The runs a profile of the s8 set is fitted on: every run of the default variant (full traces for the
    terms, their cycle-level twins for the trace overhead); compiled kernels and a separate controller process
    are other executor variants."""
    return load_runs([str(p) for p in sorted(S8.glob("*")) if not any(k in p.name for k in ("compiled", "separate"))],
                     require_full=False)


@pytest.mark.skipif(len(list(S8.glob("*"))) < 41, reason="committed GPU traces not present")
def test_current_h100_runs_leave_one_out_bound():
    """Leave-one-configuration-out over the s8 set: 37 of 41 runs predicted (the compiled-kernel and separate-process
    variants have no sibling), median 3.9%, max 13.9% when written (qwen3-0.6b SPD n=2 alpha 0.6, full trace: it ran
    38% slower than its alpha-0.8 sibling for 13% fewer accepted tokens per cycle). Session 5's model gave median 49%
    here: six outlier `collect` samples (rank 0's receive after a draft that outlasted the stages, 2-9 ms) were added
    to every cycle's verify; session 8 charges them to the draft's path only."""
    preds = validate_runs(load_runs([str(S8)], require_full=False))
    s = error_summary(preds)
    assert s["predicted"] == 37, s
    assert s["median_abs_rel_error"] <= 0.045, s
    assert s["max_abs_rel_error"] <= 0.15, s


@pytest.mark.skipif(len(list(S8.glob("*"))) < 41 or not SPEC.is_dir(), reason="committed GPU traces not present")
def test_speculative_control_runs_forecast_from_another_h100_host():
    """Session 7's 13 runs (12 at cycle level, one full trace; another 4x H100 host: default and speculative control, qwen3-4b and
    llama-3.1-8b, AR included), predicted from a profile of the s8 set, which has no speculative-control run: the
    calibration goal holds across hosts, median 1.9%, max 6.9% when written (qwen3-4b alpha 1.0 with the 17/19 split,
    predicted slow). The s8 profile's twins give the trace overhead taken off these uninstrumented runs."""
    prof = fit_profile(_s8_profile_runs())
    assert prof.trace_overhead_ms, "the s8 set has full/cycle twins"
    preds = validate_runs(load_runs([str(SPEC)], require_full=False), profile=prof)
    s = error_summary(preds)
    assert s["predicted"] == 13, s
    assert s["median_abs_rel_error"] <= 0.025, s
    assert s["max_abs_rel_error"] <= 0.075, s
    spec = [p for p in preds if "spd_speculative" in p.label]
    assert len(spec) == 7 and all(abs(p.error) <= 0.075 for p in spec), [(p.label, p.error) for p in spec]


NEW = S8  # the executor-variant checks below need a set with compiled-kernel runs beside fused-kernel ones


@pytest.mark.skipif(not (NEW / "qwen3-4b_ar_cycle_compiled").is_dir(), reason="committed GPU traces not present")
def test_executor_variants_are_kept_apart():
    """Compiled-kernel and fused-kernel runs are different executors: one profile never mixes them, and a
    speedup's AR baseline runs the same kernels."""
    from sim.errors import InputError
    from sim.calibration.validate import measured_ar_tokens_per_s

    runs = load_runs([str(NEW / n) for n in ("qwen3-4b_ar", "qwen3-4b_ar_cycle_compiled",
                                             "qwen3-4b_spd2_a1.0_cycle_compiled")], require_full=False)
    ar_fused, ar_comp, spd_comp = runs
    assert (ar_fused.kernels, ar_comp.kernels, spd_comp.processes) == ("fused", "compiled", "per-device")
    with pytest.raises(InputError, match="mix executor variants"):
        fit_profile([ar_fused, ar_comp])
    assert measured_ar_tokens_per_s(runs, spd_comp) == pytest.approx(ar_comp.tokens_per_s)


@pytest.mark.skipif(not (NEW / "qwen3-4b_spd2_a0.8").is_dir(), reason="committed GPU traces not present")
def test_ar_run_is_predicted_beside_pipeline_runs_of_two_variants():
    """An AR run has no controller variant; with pipeline runs of two variants in the set, its profile is fitted
    on one of them (a profile never mixes them) and the run is still predicted."""
    import dataclasses

    ar, spd1, spd08 = load_runs([str(NEW / n) for n in ("qwen3-4b_ar", "qwen3-4b_spd2_a1.0", "qwen3-4b_spd2_a0.8")])
    spd08 = dataclasses.replace(spd08, processes="per-rank")
    preds = validate_runs([ar, spd1, spd08])
    assert preds[0].method == "ar" and preds[0].predicted_tokens_per_s is not None, preds[0].notes
    assert preds[0].trained_on == 1


@pytest.mark.skipif(not (NEW / "qwen3-4b_spd2_a1.0_cycle_compiled").is_dir(), reason="committed GPU traces not present")
def test_a_profile_predicts_only_the_variant_it_was_fitted_on(tmp_path):
    """`spd validate --profile P`: a run of another executor variant (here compiled kernels against a fused-kernel
    profile) is reported as not predicted, not predicted with the wrong costs."""
    fused = load_runs([str(NEW / n) for n in ("qwen3-4b_ar", "qwen3-4b_spd2_a0.8", "qwen3-4b_arp2")])
    prof = fit_profile(fused)
    assert {v["kernels"] for v in prof.source["variants"]} == {"fused"}
    comp = load_runs([str(NEW / "qwen3-4b_spd2_a1.0_cycle_compiled"), str(NEW / "qwen3-4b_spd2_a1.0_cycle")],
                     require_full=False)
    preds = validate_runs(comp, prof)
    assert preds[0].predicted_tokens_per_s is None and "another executor variant" in preds[0].notes[0]
    assert preds[1].predicted_tokens_per_s is not None


def test_per_layer_time_of_a_same_dimension_shape():
    """Random-weight timing runs stand for the real model: a shape measured under another name with the same
    dimensions gives its per-layer time; other shapes take the cross-width line."""
    from sim.calibration.profile import Dist, StageModel

    st = StageModel(a0_ms=0.01, a1_ms_per_mparam=0.02, b_ms=0.0, kappa=0.0, spread=Dist(1.0),
                    per_shape_layer_ms={"smollm2-135m:d576:ffn1536:h9/3x64:v49152": 0.067})
    assert st.layer_ms("SmolLM2 135M Instruct:d576:ffn1536:h9/3x64:v49152", 3.54) == 0.067
    assert st.layer_ms("other:d640:ffn1536:h9/3x64:v49152", 3.54) == pytest.approx(0.01 + 0.02 * 3.54)


H200 = Path(__file__).parents[1] / "traces"
# the same host's 2-GPU runs of the 4-GPU runs' executor variant (fused kernels, one process per GPU, graphed draft)
TWO_GPU = sorted(str(p) for p in (H200 / "h200x4_2gpu").glob("*") if not any(k in p.name for k in ("compiled", "separate")))
FOUR_GPU = sorted(str(p) for p in (H200 / "h200x4").glob("*"))


@pytest.mark.skipif(len(TWO_GPU) < 30 or len(FOUR_GPU) < 20, reason="committed 4x H200 traces not present")
def test_four_gpu_runs_forecast_from_two_gpu_runs_of_the_same_host():
    """Issue 8's forecast (session 4, 4x H200): calibrated on the 2-GPU runs only (n=2, and n=3/4 with two
    stages on a GPU, with their cycle-level twins), the 4-GPU runs (n=4, one stage per GPU) it never saw are
    predicted within the calibration goal at full trace level (12 runs, session 5's default-model run
    included: median 2.1%, max 3.4% when written), and within 15% uninstrumented (13 pipeline runs, session 5's
    stage-split runs included: median 5.4%, max 14.2%, the max a qwen3-4b alpha 1.0 run whose full-trace twin
    runs only 0.1 ms per cycle slower where other twins run 0.3-0.5 ms slower; reports/h200x4/forecast_from_2gpu).
    Speedups divide by the AR step the profile measured for the shape (session 5; before, by a line fitted
    across widths, which missed SmolLM2-135M's AR by 9-11%)."""
    from sim.calibration.validate import validate_runs

    prof = fit_profile(load_runs(TWO_GPU, require_full=False))
    # The control broadcast grows with the number of stages; only the n=3/4 two-GPU runs show how fast
    # (a profile of the n=2 runs alone over-predicted the 4-GPU SPD runs by 24-31%).
    assert prof.control.coef.get("stages", 0.0) > 0.03, prof.control.coef
    # In the AR pipeline stage 1's thread (in rank 0's process) starts ~0.4 ms after the cycle start, however
    # short the broadcast: the floor is fitted there only (for SPD it made this forecast worse).
    floor = prof.by_method["ar_pipeline"].stage1_start_floor
    assert floor is not None and 0.2 < floor.mean_ms < 0.8 and prof.by_method["spd"].stage1_start_floor is None
    four = load_runs(FOUR_GPU, require_full=False)
    preds = validate_runs(four, profile=prof)
    full = error_summary([p for p, r in zip(preds, four) if r.trace_level == "full"])
    assert full["predicted"] == 12
    assert full["median_abs_rel_error"] <= 0.03, full
    assert full["max_abs_rel_error"] <= 0.07, full
    wall = error_summary([p for p, r in zip(preds, four) if r.trace_level == "cycle" and r.method != "ar"])
    assert wall["predicted"] == 13
    # session 8 (per-stage start and report, anchor stages, head, trace overhead as a cycle total): 2.9% / 9.8%
    assert wall["median_abs_rel_error"] <= 0.04 and wall["max_abs_rel_error"] <= 0.11, wall


@pytest.mark.skipif(len(TWO_GPU) < 30 or len(FOUR_GPU) < 20, reason="committed 4x H200 traces not present")
def test_trace_overhead_from_twins_makes_uninstrumented_predictions_better(monkeypatch):
    """`--trace full` synchronises at every event, so full-trace timings over-state the wall clock: by
    0.1-0.9 ms per cycle at n=4 on 4x H200. Runs measured at both levels give that overhead; leave-one-
    configuration-out over the same host's 2- and 4-GPU runs, the cycle-level (headline) pipeline runs are then
    predicted with median 5.7%, max 12.4% over 17 runs (without it 10.7% / 21.3%, all too slow) when written
    (session 5's runs and measured AR steps included); since session 8 the overhead comes off each cycle as a
    whole (a filling cycle loses more than rank 0's serial costs there)."""
    import sim.calibration.fit as fit
    from sim.calibration.validate import validate_runs

    paths = sorted(str(p) for d in ("h200x4", "h200x4_2gpu") for p in (H200 / d).glob("*"))
    runs = load_runs(paths, require_full=False)
    fused = [r for r in runs if "compiled" not in r.path and "separate" not in r.path]
    prof = fit_profile(fused)
    over = prof.trace_overhead_ms
    assert prof.source["trace_overhead_pairs"] >= 10
    # the AR pipeline's per rank on its serial path (session 10): 0.17 ms, i.e. 0.52 ms at n=2 and 0.87 at n=4
    assert 0 < over["spd"]["accept"] < over["spd"]["fill"] < 1.0 and 0.1 < over["ar_pipeline"]["ar_per_rank"] < 0.3, over
    assert len(prof.source["traces"]) == sum(r.fittable for r in fused) < len(fused)  # twins: overhead only

    def headline_errors(every: list | None = None):
        preds = validate_runs(runs)
        if every is not None:
            every.append(error_summary(preds))
        return error_summary([p for p, r in zip(preds, runs) if r.trace_level == "cycle" and r.method != "ar"])

    every: list = []
    with_overhead = headline_errors(every)
    # all 65 predicted runs of the host (session 8; 2.6% / 12.4% before: the max is llama-3.1-8b SPD n=3 with two
    # stages and the draft on one GPU, whose bandwidth contention the model under-states)
    assert every[0]["predicted"] == 65 and every[0]["median_abs_rel_error"] <= 0.025, every
    assert every[0]["max_abs_rel_error"] <= 0.14, every
    monkeypatch.setattr(fit, "fit_trace_overhead", lambda rs: ({}, 0))
    without = headline_errors()
    assert with_overhead["predicted"] == without["predicted"] == 17
    # session 8: 2.5% / 8.9% (without the overhead 11.2% / 22.2%); every run of the host: 1.9% / 13.4%
    assert with_overhead["median_abs_rel_error"] <= 0.035, with_overhead
    assert with_overhead["max_abs_rel_error"] <= 0.10, with_overhead
    assert with_overhead["median_abs_rel_error"] < 0.6 * without["median_abs_rel_error"], (with_overhead, without)
    assert with_overhead["max_abs_rel_error"] < without["max_abs_rel_error"], (with_overhead, without)


@pytest.mark.skipif(not SPEC.is_dir(), reason="committed GPU traces not present")
def test_speculative_control_runs_predicted_from_an_earlier_h100_profile():
    """Session 7's speculative-control runs (2 GPUs of a 4x H100 host, never seen by the profile) against the
    session-3 2x H100 profile: every cycle-level speculative run within 5% on the speedup when written (max
    4.7%, llama-3.1-8b alpha 1.0), while the default-control twins are predicted 9-11% slow (the profile
    predates the event-polled receive). Method ``spd_speculative`` is predicted, never fitted."""
    from sim.calibration.profile import load_profile

    prof = load_profile(Path(__file__).parents[1] / "profiles" / "h100x2_full_traces.json", here={})
    preds = validate_runs(load_runs([str(SPEC)], require_full=False), profile=prof)
    spec = [p for p in preds if "spd_speculative" in p.label and "cycle" in p.path]
    assert len(spec) == 6
    assert all(p.error is not None and abs(p.error) <= 0.05 for p in spec), [(p.label, p.error) for p in spec]
    default = [p for p in preds if p.method == "spd" and "spd_speculative" not in p.label]
    assert len(default) == 4 and all(-0.13 <= p.error <= -0.07 for p in default), [(p.label, p.error) for p in default]


S10 = Path(__file__).parents[1] / "traces" / "h100x4_s10"
S10_2GPU = Path(__file__).parents[1] / "traces" / "h100x2_s10"
S8_PROFILE = Path(__file__).parents[1] / "profiles" / "h100x4_2gpu_s8.json"


@pytest.mark.skipif(len(list(S10.glob("*"))) < 43, reason="committed GPU traces not present")
def test_four_gpu_h100_runs_forecast_from_the_two_gpu_profile_of_another_host():
    """Session 10 (issue 6): 39 uninstrumented runs on 4 GPUs of another 4x H100 host (`executor_matrix.py --plan
    x4-long --call 1..3 --prompts 8 --max-new-tokens 128`: qwen3-4b and llama-3.1-8b, AR, AR pipeline and SPD n=4
    one stage per GPU at alpha 1.0/0.8/0.6, three qwen3-4b splits; each configuration three times, interleaved),
    predicted from `profiles/h100x4_2gpu_s8.json`, which saw 2 GPUs only: median 2.4%, max 7.8% per run when
    written; each configuration's mean: median 1.7%, max 5.4%. Repeats spread by up to 10.6% (runs four times
    longer than session 9's spread as much: a launch's own speed, not per-token noise). The AR pipeline's trace
    overhead grows with its serial ranks (it was predicted 9-12% slow with a per-cycle constant). The three full-trace
    SPD runs (4 x 64 tokens) are predicted 9-14% slow: full tracing costs less on this host than on the profile's."""
    from sim.calibration.profile import load_profile
    from sim.calibration.validate import configuration_errors, repeat_spread

    prof = load_profile(S8_PROFILE, here={})
    runs = load_runs([str(S10)], require_full=False)
    preds = validate_runs(runs, profile=prof)
    cyc = [(r, p) for r, p in zip(runs, preds) if r.trace_level == "cycle"]
    s = error_summary([p for _, p in cyc])
    assert s["predicted"] == 39 and s["median_abs_rel_error"] <= 0.03 and s["max_abs_rel_error"] <= 0.085, s
    conf = configuration_errors([r for r, _ in cyc], [p for _, p in cyc])
    assert conf["repeated"] == 13 and conf["median_abs_rel_error"] <= 0.02 and conf["max_abs_rel_error"] <= 0.06, conf
    assert all(abs(p.error) <= 0.07 for p in preds if p.method == "ar_pipeline"), [p.error for p in preds]
    rep = repeat_spread(runs)
    assert rep["repeated_configurations"] == 13 and 0.08 < rep["max_spread"] < 0.12, rep
    full = [p for r, p in zip(runs, preds) if r.trace_level == "full" and r.method != "ar"]
    assert len(full) == 3 and all(-0.15 < p.error < -0.08 for p in full), [p.error for p in full]


@pytest.mark.skipif(len(list(S10_2GPU.glob("*"))) < 20, reason="committed GPU traces not present")
def test_sub_1b_shapes_at_n2_are_forecast_within_their_repeat_spread():
    """Session 10: smollm2-135m and qwen3-0.6b, AR, AR pipeline and SPD n=2 at alpha 1.0/0.8/0.6 on a 2x H100 host,
    uninstrumented, twice each, forecast from the same 2-GPU profile of another host: each configuration's mean
    median 2.0%, max 8.9% (qwen3-0.6b SPD alpha 1.0); single runs up to 16.8%, as far as their repeats disagree
    (13.7%: 428.8 and 374.5 tok/s). A stage of these shapes takes ~0.5 ms, and the launch's own speed swamps it."""
    from sim.calibration.profile import load_profile
    from sim.calibration.validate import configuration_errors, repeat_spread

    runs = load_runs([str(S10_2GPU)], require_full=False)
    preds = validate_runs(runs, profile=load_profile(S8_PROFILE, here={}))
    conf = configuration_errors(runs, preds)
    assert conf["configurations"] == 10 and conf["median_abs_rel_error"] <= 0.025 and conf["max_abs_rel_error"] <= 0.10
    assert repeat_spread(runs)["max_spread"] > 0.10
    assert all(abs(p.error) <= 0.04 for p in preds if p.method == "ar_pipeline"), [p.error for p in preds]


@pytest.mark.skipif(len(list(S10.glob("*_split*_r?"))) < 9, reason="committed GPU traces not present")
def test_split_forecasts_against_the_measured_gains():
    """Which split is fastest (`spd split`), qwen3-4b SPD n=4 alpha 1.0, uninstrumented, means of three interleaved
    repeats of 8 x 128 tokens against 9/9/9/9: 8/14/8/6 +3.6% (predicted +4.5%), 7/9/9/11 -7.8% (-6.2%), and the
    profile's proposal 8/12/9/7 -1.3% (predicted +4.8%: the profile over-states what a shorter last stage gains;
    session 9's +13.5% for it came from 4 x 64-token runs on one host, within their noise)."""
    from statistics import mean

    from sim.calibration.profile import load_profile

    def tps(split):
        return mean(r.tokens_per_s for r in load_runs([str(p) for p in sorted(S10.glob(f"qwen3-4b_spd4_a1.0_cycle{split}_r?"))],
                                                    require_full=False))

    base = tps("")
    assert tps("_split8-14-8-6") > 1.02 * base and tps("_split7-9-9-11") < 0.95 * base
    assert abs(tps("_split8-12-9-7") / base - 1) < 0.03
    runs = load_runs([str(S10 / f"qwen3-4b_spd4_a1.0_cycle{sp}_r1") for sp in ("", "_split8-14-8-6", "_split7-9-9-11",
                                                                              "_split8-12-9-7")], require_full=False)
    base_p, fast_p, slow_p, proposal_p = (p.predicted_tokens_per_s for p in validate_runs(runs, profile=load_profile(S8_PROFILE, here={})))
    assert fast_p > base_p > slow_p and proposal_p > 1.03 * base_p
