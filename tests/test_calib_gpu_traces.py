"""Regression bound for calibration on the committed 2x H100 `--trace full` traces of the first runtime (traces/h100x2_v1: separate controller process, unfused kernels, 2048-slot caches).

Leave-one-configuration-out over 8 runs of two widths: median |error| 4.9%, max 26.6% when written
(reports/h100x2/report.md). The max is SPD alpha=1.0 on smollm2, whose draft forward is 36% slower than
the alpha=0.6 run's for the same work (run-to-run noise the model cannot see). A change to the model that
moves these bounds should be a conscious one.
"""
from pathlib import Path

import pytest

from sim.calibration.fit import fit_profile
from sim.calibration.inputs import load_runs
from sim.calibration.validate import error_summary, validate_runs

GPU = Path(__file__).parents[1] / "traces" / "h100x2_v1"
FULL = sorted(str(p) for p in GPU.glob("*") if p.name.startswith(("smollm2-135m_", "qwen3-0.6b_")))

pytestmark = pytest.mark.skipif(len(FULL) < 8, reason="committed GPU traces not present")


def test_gpu_full_traces_leave_one_out_bound():
    preds = validate_runs(load_runs(FULL))
    s = error_summary(preds)
    assert s["predicted"] == 8
    assert s["median_abs_rel_error"] <= 0.07, s
    assert s["max_abs_rel_error"] <= 0.30, s
    arp = [p for p in preds if p.method == "ar_pipeline"]
    assert arp and all(abs(p.error) <= 0.10 for p in arp), [(p.label, p.error) for p in arp]


def test_gpu_profile_separates_controller_activity():
    """The shared-GPU slowdown of stage 1 depends on what the co-resident controller does (posted NCCL
    receive in the AR pipeline vs the draft forward in SPD), and cycle-level traces are never fitted."""
    prof = fit_profile(load_runs(FULL))
    k = prof.stage.kappa_by_method
    assert k["ar_pipeline"] > 0.5 and k["spd"] < 0.2, k
    assert prof.by_method["ar_pipeline"].control_hop.mean_ms > 3 * prof.by_method["spd"].control_hop.mean_ms
    assert prof.by_method["spd"].collect is not None and prof.by_method["spd"].collect.mean_ms > 0
    cyc = load_runs([str(GPU / "qwen3-4b_spd2_a1.0_cycle")], require_full=False)
    assert cyc[0].trace_level == "cycle" and not cyc[0].fittable


NEW = Path(__file__).parents[1] / "traces" / "h100x2"


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
    assert wall["median_abs_rel_error"] <= 0.07 and wall["max_abs_rel_error"] <= 0.15, wall


@pytest.mark.skipif(len(TWO_GPU) < 30 or len(FOUR_GPU) < 20, reason="committed 4x H200 traces not present")
def test_trace_overhead_from_twins_makes_uninstrumented_predictions_better(monkeypatch):
    """`--trace full` synchronises at every event, so full-trace timings over-state the wall clock: by
    0.1-0.9 ms per cycle at n=4 on 4x H200. Runs measured at both levels give that overhead; leave-one-
    configuration-out over the same host's 2- and 4-GPU runs, the cycle-level (headline) pipeline runs are then
    predicted with median 5.7%, max 12.4% over 17 runs (without it 10.7% / 21.3%, all too slow) when written
    (session 5's runs and measured AR steps included)."""
    import sim.calibration.fit as fit
    from sim.calibration.validate import validate_runs

    paths = sorted(str(p) for d in ("h200x4", "h200x4_2gpu") for p in (H200 / d).glob("*"))
    runs = load_runs(paths, require_full=False)
    fused = [r for r in runs if "compiled" not in r.path and "separate" not in r.path]
    prof = fit_profile(fused)
    over = prof.trace_overhead_ms
    assert prof.source["trace_overhead_pairs"] >= 10
    assert 0 < over["spd"]["accept"] < over["spd"]["fill"] < 1.0 and 0.3 < over["ar_pipeline"]["ar"] < 1.2, over
    assert len(prof.source["traces"]) == sum(r.fittable for r in fused) < len(fused)  # twins: overhead only

    def headline_errors():
        preds = validate_runs(runs)
        return error_summary([p for p, r in zip(preds, runs) if r.trace_level == "cycle" and r.method != "ar"])

    with_overhead = headline_errors()
    monkeypatch.setattr(fit, "fit_trace_overhead", lambda rs: ({}, 0))
    without = headline_errors()
    assert with_overhead["predicted"] == without["predicted"] == 17
    assert with_overhead["median_abs_rel_error"] <= 0.06, with_overhead
    assert with_overhead["median_abs_rel_error"] < 0.6 * without["median_abs_rel_error"], (with_overhead, without)
    assert with_overhead["max_abs_rel_error"] < without["max_abs_rel_error"], (with_overhead, without)


SPEC = Path(__file__).parents[1] / "traces" / "h100x4_2gpu_spec"


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
