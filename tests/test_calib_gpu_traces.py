"""Regression bounds for calibration on the committed GPU traces. A change to the model that moves these bounds
should be a conscious one.

The first set is session 8's: the `x2` plan (scripts/gpu/executor_matrix.py) with the current executor on a 4x H100
host, 41 runs (n=2 on two GPUs at both trace levels; n=3/4 on 3/4 of its GPUs, one stage per GPU, despite the set's
name; the headline variants). Its runs were recorded after session 8's model changes were designed on the H200
sets, so they are the out-of-sample check of that model. (The first runtime's set, traces/h100x2_v1, and the 2x H200
set are in git history since session 8; session 3's 2x H100 set, traces/h100x2, since session 9: restore it with
`git checkout d4a0660 -- traces/h100x2`; 4x H200's 2-GPU set since session 11: `git checkout 12bde2d --
traces/h200x4_2gpu`.) Later sets: 4 GPUs of other H100 hosts (sessions 9-10), the sub-1B repeats (sessions 10-11),
stages sharing a GPU (session 11), each forecast from or validated with the first.
"""
import json
from pathlib import Path

import pytest

from sim.calibration.fit import fit_profile
from sim.calibration.inputs import load_runs
from sim.calibration.validate import error_summary, validate_runs
from sim.cli import main

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


H200 = Path(__file__).parents[1] / "traces" / "h200x4"
H200_2GPU_PROFILE = Path(__file__).parents[1] / "profiles" / "h200x4_2gpu_full_traces.json"


@pytest.mark.skipif(len(list(H200.glob("*"))) < 20, reason="committed 4x H200 traces not present")
def test_four_gpu_runs_forecast_from_the_two_gpu_profile_of_the_same_host():
    """Issue 8's forecast (sessions 4-5, 4x H200): the profile fitted only on the same host's 2-GPU runs (n=2, and
    n=3/4 with two stages on a GPU, with their cycle-level twins; refitted in session 10; the traces,
    traces/h200x4_2gpu, are in git history since session 11: `git checkout 12bde2d -- traces/h200x4_2gpu`)
    predicts the 4-GPU runs (n=4, one stage per GPU) it never saw: 9 full-trace pipeline runs median 3.3%, max
    5.2%; 13 uninstrumented ones median 2.2%, max 9.7% when written (the max a qwen3-4b alpha 1.0 run whose full-trace
    twin runs only 0.1 ms per cycle slower where the pooled overhead says 0.3 ms)."""
    from sim.calibration.profile import load_profile

    prof = load_profile(H200_2GPU_PROFILE, here={})
    # the control broadcast grows with the number of stages: only the n=3/4 two-GPU runs show how fast (a profile
    # of the n=2 runs alone over-predicted the 4-GPU SPD runs by 24-31%)
    assert prof.control.coef.get("stages", 0.0) > 0.03, prof.control.coef
    four = load_runs([str(H200)], require_full=False)
    preds = validate_runs(four, profile=prof)
    full = error_summary([p for p, r in zip(preds, four) if r.trace_level == "full" and r.method != "ar"])
    assert full["predicted"] == 9 and full["median_abs_rel_error"] <= 0.04 and full["max_abs_rel_error"] <= 0.07, full
    wall = error_summary([p for p, r in zip(preds, four) if r.trace_level == "cycle" and r.method != "ar"])
    assert wall["predicted"] == 13 and wall["median_abs_rel_error"] <= 0.03 and wall["max_abs_rel_error"] <= 0.11, wall


@pytest.mark.skipif(len(list(S8.glob("*"))) < 41, reason="committed GPU traces not present")
def test_trace_overhead_from_twins_makes_uninstrumented_predictions_better(monkeypatch):
    """`--trace full` synchronises at every event, so full-trace timings over-state the wall clock. Runs measured at
    both levels give that overhead; leave-one-configuration-out over the s8 set, its 7 cycle-level pipeline runs
    are predicted with median 4.6%, max 12.0% when written, and without it 8.3% / 24.5%, all too slow. (The same
    check on 4x H200, 65 runs, was this test until session 11: 2.5% / 8.9% against 11.2% / 22.2%.)"""
    import sim.calibration.fit as fit

    runs = _s8_profile_runs()
    prof = fit_profile(runs)
    over = prof.trace_overhead_ms
    assert prof.source["trace_overhead_pairs"] == 6
    assert 0 < over["spd"]["fill"] < over["spd"]["accept"] < 1.0 and 0.1 < over["ar_pipeline"]["ar_per_rank"] < 0.3, over
    assert len(prof.source["traces"]) == sum(r.fittable for r in runs) < len(runs)  # twins: overhead only

    def headline_errors():
        return error_summary([p for p, r in zip(validate_runs(runs), runs) if r.trace_level == "cycle" and r.method != "ar"])

    with_overhead = headline_errors()
    monkeypatch.setattr(fit, "fit_trace_overhead", lambda rs: ({}, 0))
    without = headline_errors()
    assert with_overhead["predicted"] == without["predicted"] == 7
    assert with_overhead["median_abs_rel_error"] <= 0.05 and with_overhead["max_abs_rel_error"] <= 0.13, with_overhead
    assert with_overhead["median_abs_rel_error"] < 0.6 * without["median_abs_rel_error"], (with_overhead, without)
    assert with_overhead["max_abs_rel_error"] < 0.6 * without["max_abs_rel_error"], (with_overhead, without)


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


@pytest.mark.skipif(len(list(S10.glob("*"))) < 39, reason="committed GPU traces not present")
def test_four_gpu_h100_runs_forecast_from_the_two_gpu_profile_of_another_host():
    """Session 10 (issue 6): 39 uninstrumented runs on 4 GPUs of another 4x H100 host (`executor_matrix.py --plan
    x4-long --call 1..3 --prompts 8 --max-new-tokens 128`: qwen3-4b and llama-3.1-8b, AR, AR pipeline and SPD n=4
    one stage per GPU at alpha 1.0/0.8/0.6, three qwen3-4b splits; each configuration three times, interleaved),
    predicted from `profiles/h100x4_2gpu_s8.json`, which saw 2 GPUs only: median 2.4%, max 7.8% per run when
    written; each configuration's mean: median 1.7%, max 5.4%. Repeats spread by up to 10.6% (runs four times
    longer than session 9's spread as much: a launch's own speed, not per-token noise). The AR pipeline's trace
    overhead grows with its serial ranks (it was predicted 9-12% slow with a per-cycle constant). (Three full-trace
    SPD runs of 4 x 64 tokens, predicted 9-14% slow, went to git history in session 11: `git checkout 12bde2d --
    traces/h100x4_s10`.)"""
    from sim.calibration.profile import load_profile
    from sim.calibration.validate import configuration_errors, repeat_spread

    prof = load_profile(S8_PROFILE, here={})
    runs = load_runs([str(S10)], require_full=False)
    preds = validate_runs(runs, profile=prof)
    assert all(r.trace_level == "cycle" for r in runs)
    s = error_summary(preds)
    assert s["predicted"] == 39 and s["median_abs_rel_error"] <= 0.03 and s["max_abs_rel_error"] <= 0.085, s
    conf = configuration_errors(runs, preds)
    assert conf["repeated"] == 13 and conf["median_abs_rel_error"] <= 0.02 and conf["max_abs_rel_error"] <= 0.06, conf
    assert all(abs(p.error) <= 0.07 for p in preds if p.method == "ar_pipeline"), [p.error for p in preds]
    rep = repeat_spread(runs)
    assert rep["repeated_configurations"] == 13 and 0.08 < rep["max_spread"] < 0.12, rep


S11_PIN = Path(__file__).parents[1] / "traces" / "h100x2_pin_s11"


@pytest.mark.skipif(len(list(S10_2GPU.glob("*"))) < 20 or len(list(S11_PIN.glob("*"))) < 24,
                    reason="committed GPU traces not present")
def test_sub_1b_shapes_at_n2_are_forecast_within_their_repeat_spread():
    """smollm2-135m and qwen3-0.6b, AR, AR pipeline and SPD n=2 at alpha 1.0/0.8/0.6 on 2x H100 hosts, uninstrumented,
    four times each (session 10: two; session 11: two more, on another host, `--plan x2-pin`), forecast from the
    2-GPU profile of a third host: each configuration's mean median 1.8%, max 6.5% when written (with session 10's
    two repeats alone: 2.0% / 8.9%); single runs up to 16.6%, as far as their repeats disagree (16.7%). A stage of
    these shapes takes ~0.5 ms, and the launch's own speed swamps it. The session-11 runs pinned to CPU blocks
    (`spd run --pin-cpus`) are another configuration and spread as much (4-8%)."""
    from sim.calibration.profile import load_profile
    from sim.calibration.validate import configuration_errors, repeat_spread

    paths = [str(S10_2GPU)] + [str(p) for p in sorted(S11_PIN.glob("*")) if "_pin_" not in p.name]
    runs = load_runs(paths, require_full=False)
    preds = validate_runs(runs, profile=load_profile(S8_PROFILE, here={}))
    conf = configuration_errors(runs, preds)
    assert conf["configurations"] == conf["repeated"] == 10, conf
    assert conf["median_abs_rel_error"] <= 0.025 and conf["max_abs_rel_error"] <= 0.07, conf
    assert all(r["runs"] == 4 for r in conf["rows"])
    assert repeat_spread(runs)["max_spread"] > 0.10
    assert all(abs(p.error) <= 0.05 for p in preds if p.method == "ar_pipeline"), [p.error for p in preds]
    pinned = load_runs([str(p) for p in sorted(S11_PIN.glob("*_pin_*"))], require_full=False)
    assert len(pinned) == 4 and all(r.pin_cpus and "pinned CPUs" in r.label for r in pinned)
    assert repeat_spread(pinned)["max_spread"] > 0.03  # pinning does not make these repeat


S11_SHARED = Path(__file__).parents[1] / "traces" / "h100x2_shared_s11"


@pytest.mark.skipif(len(list(S8.glob("*"))) < 41 or len(list(S11_SHARED.glob("*"))) < 16,
                    reason="committed GPU traces not present")
def test_stages_sharing_a_gpu_uninstrumented_contention_from_cycle_level_runs():
    """Session 11, 2x H100: qwen3-4b and llama-3.1-8b SPD alpha 0.8 at n=3 (stages 1-2 on GPU 0) and n=4 (1-2 on
    GPU 0, 3-4 on GPU 1), uninstrumented, twice each (within 0.8-3.2%), plus full traces of four of them. Fitted
    with the s8 set, the full traces give kappa 0.5+ per further stage, and the uninstrumented runs come out 1-13%
    faster than that predicts; tracing changes how processes time-slice a GPU. Fitted through the simulator on the
    cycle-level runs, kappa = c x T (T: the forward alone) needs c 0.20-0.24/ms across the four configurations;
    leave-one-configuration-out over them (c from the other three) when written: -1.3%, -2.7%, +1.9%, +0.7%."""
    from sim.calibration.untraced_contention import untraced_shared_runs

    shared = load_runs([str(S11_SHARED)], require_full=False)
    full = [r for r in shared if r.trace_level == "full"]
    cycle = untraced_shared_runs(shared)
    assert len(full) == 4 and len(cycle) == 8
    base = _s8_profile_runs() + full + [r for r in shared if r.method == "ar"]
    traced = fit_profile(base)
    assert traced.stage.kappa_by_method["spd"] > 0.4 and not traced.stage.untraced_kappa_per_ms_by_method
    too_slow = [p.rel_error_tokens_per_s for p in validate_runs(cycle, profile=traced)]
    assert all(-0.16 < e < 0 for e in too_slow) and sum(e < -0.09 for e in too_slow) >= 4, too_slow
    assert any("contention from full traces" in n for p in validate_runs(cycle[:1], profile=traced) for n in p.notes)
    prof = fit_profile(base + cycle)
    fits = prof.source["untraced_contention"]
    assert len(fits) == 4 and all(0.18 < f["c_per_ms"] < 0.26 and not f["capped"] for f in fits), fits
    assert prof.stage.untraced_forward_range_ms["spd"][0] > 1.3 and prof.stage.untraced_forward_range_ms["spd"][1] < 2.7
    for key in sorted({r.config_key for r in cycle}):  # leave one configuration out
        out = [r for r in cycle if r.config_key == key]
        loo = fit_profile(base + [r for r in cycle if r.config_key != key])
        preds = validate_runs(out, profile=loo)
        err = sum(p.predicted_tokens_per_s for p in preds) / sum(p.measured_tokens_per_s for p in preds) - 1
        assert abs(err) <= 0.04, (key, err)


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


SHARED_PROFILE = Path(__file__).parents[1] / "profiles" / "h100x2_shared_s11.json"


@pytest.mark.skipif(not SHARED_PROFILE.is_file(), reason="committed profiles not present")
def test_a_prediction_says_what_its_shared_device_contention_rests_on():
    """Stages sharing a GPU: a profile with no such run says contention is not modelled (with full traces only, that
    it over-states an uninstrumented run's: the test above); with the uninstrumented c x T, which c, and when a
    forward lies outside the forward times c was fitted on (qwen3-0.6b at n=4: ~0.6-ms stages against 1.4-2.6 ms);
    a full-trace prediction, nothing."""
    from sim.calibration.fit import shape_lookup
    from sim.calibration.profile import load_profile
    from sim.calibration.profile_to_scenario import calibrated_method

    placement = ("vm/cuda:0",) * 3 + ("vm/cuda:1",) * 2  # controller, stages 1-2 on GPU 0, stages 3-4 on GPU 1
    shared, s8 = load_profile(SHARED_PROFILE, here={}), load_profile(S8_PROFILE, here={})

    def notes(prof, shape, untraced=True):
        cal = calibrated_method(prof, shape_lookup(prof, shape, None, 0), "spd", stages=4, placement=placement,
                                draft_source="replay", untraced=untraced)
        return [n for n in cal.notes if n.startswith("stages sharing a device")]

    assert "not modelled" in notes(s8, "qwen3-4b")[0]
    assert notes(shared, "qwen3-4b", untraced=False) == []  # a full-trace run: what the fitted kappa describes
    inside, outside = notes(shared, "qwen3-4b"), notes(shared, "qwen3-0.6b")
    c = shared.stage.untraced_kappa_per_ms_by_method["spd"]
    assert len(inside) == 1 and f"{c:.3f}/ms" in inside[0] and "1.42 ms" in inside[0], inside
    assert len(outside) == 2 and "extrapolated" in outside[1], outside


@pytest.mark.skipif(len(list(S10.glob("*_r?"))) < 39 or len(list(S11_SHARED.glob("*"))) < 16
                    or len(list(S11_PIN.glob("*"))) < 24, reason="committed GPU traces not present")
def test_issue_6_goal_leave_one_out_over_every_h100_set(tmp_path, capsys):
    """Issue 6's goal in `spd validate`'s own mode, leave-one-configuration-out, over every committed H100 set
    (four hosts: s8's 2-GPU calibration set, session 10's 4-GPU and sub-1B repeats, session 11's sub-1B and
    shared-GPU repeats; 132 runs, ~3 minutes): the wall-clock speedup (uninstrumented runs) of each configuration
    measured two or more times, its mean over the repeats, median 1.9%, max 5.8% when written (27 configurations:
    four shapes; AR, AR pipeline, SPD at alpha 1.0/0.8/0.6; n=2 on two GPUs, n=4 one stage per GPU with three
    splits, n=3/4 with two stages per GPU). Single runs and full traces are predicted and reported, not bounded
    (repeats spread by up to 16.7%; full tracing slows a run 15-20%)."""
    s8 = [str(p) for p in sorted(S8.glob("*")) if not any(k in p.name for k in ("compiled", "separate"))]
    unpinned = [str(p) for p in sorted(S11_PIN.glob("*_r?")) if "_pin_r" not in p.name]
    paths = s8 + [str(p) for p in sorted(S10.glob("*_r?"))] + [str(S10_2GPU)] + unpinned + [str(S11_SHARED)]
    rc = main(["validate", *paths, "--per-configuration", "--min-repeats", "2", "--uninstrumented",
               "--max-error", "0.07", "-o", str(tmp_path / "rep")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    res = json.loads((tmp_path / "rep" / "validation.json").read_text())
    bounded = [r for r in res["per_configuration"]["rows"] if r["trace_level"] == "cycle" and r["runs"] >= 2]
    assert res["summary"]["predicted"] == 132 and len(bounded) == 27
    errs = sorted(abs(r["rel_error"]) for r in bounded)
    assert errs[len(errs) // 2] <= 0.03 and errs[-1] <= 0.07, errs
