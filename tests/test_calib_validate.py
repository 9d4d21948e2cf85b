"""`spd validate`: the loop on synthetic traces (exit codes, report files) and on the committed CPU traces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main

from test_calib_fit import SMALL, WIDE, true_profile

CPU_TRACES = Path(__file__).parents[1] / "traces" / "cpu"
CPU_MAX_ERROR = 2.0  # gloo, 3-5 ranks on 2 shared cores, recorded while the machine was busy: guards the loop
# (a unit error is off by 1000x), not accuracy. Was 1.5 until session 5: speedups now divide by the measured AR
# step, so they carry the pipeline runs' own tokens/s errors (up to +163% here) instead of a fitted AR line's


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from sim.calibration.synthetic import synthetic_run

    root = tmp_path_factory.mktemp("val")
    # every held-out configuration leaves two widths and two sharing levels in the training set: with a
    # single width (or sharing level) left, width (or contention) extrapolation is not identifiable
    cfgs = [(SMALL, "spd", 2), (SMALL, "spd", 3), (SMALL, "ar_pipeline", 4), (WIDE, "spd", 2), (WIDE, "spd", 4),
            (WIDE, "ar_pipeline", 3), (SMALL, "ar", 1), (WIDE, "ar", 1)]
    for i, (shape, method, n) in enumerate(cfgs):
        synthetic_run(root / f"r{i}", true_profile(), shape, method, n=n, alpha=0.7, prompts=2, tokens=24, seed=i,
                      spread="constant")
    return root


def test_validate_synthetic_meets_tight_bound(synth, tmp_path, capsys):
    rc = main(["validate", str(synth), "--profile-from-others", "--max-error", "0.10", "-o", str(tmp_path / "rep")])
    out = capsys.readouterr().out
    assert rc == 0, out
    res = json.loads((tmp_path / "rep" / "validation.json").read_text())
    assert res["summary"]["predicted"] == 8
    assert (tmp_path / "rep" / "scatter.svg").read_text().startswith("<svg")
    assert "leave-one-configuration-out" in (tmp_path / "rep" / "report.md").read_text()
    spd = [r for r in res["runs"] if r["method"] == "spd"]
    assert all(r["measured_speedup"] and r["predicted_speedup"] for r in spd)


def test_validate_with_a_given_profile_says_it_is_a_forecast(synth, tmp_path):
    prof = tmp_path / "p.json"
    assert main(["calibrate", str(synth), "-o", str(prof)]) == 0
    assert main(["validate", str(synth), "--profile", str(prof), "-o", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "forecast from a given profile" in text and f"`{prof}`" in text
    assert "leave-one-configuration-out" not in text


def test_calibrate_self_check_travels_with_the_profile(synth, tmp_path, capsys):
    """`spd calibrate --self-check` stores the profile's leave-one-configuration-out errors on its own runs, and
    a prediction with that profile says them (a profile without them says nothing)."""
    plain, checked = tmp_path / "plain.json", tmp_path / "checked.json"
    assert main(["calibrate", str(synth), "-o", str(plain)]) == 0
    assert main(["calibrate", str(synth), "--self-check", "-o", str(checked)]) == 0
    out = capsys.readouterr().out
    check = json.loads(checked.read_text())["source"]["self_check"]
    assert "self_check" not in json.loads(plain.read_text())["source"]
    assert check["full"]["predicted"] == 6 and 0 <= check["full"]["median_abs_rel_error"] < 0.10
    assert "self-check: its own runs" in out
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps({"target": {"name": SMALL.name, "layers": SMALL.layers, "hidden_size": SMALL.hidden_size},
                                "acceptance": {"alpha": 0.8}, "methods": [{"method": "spd", "stages": 2, "draft_layers": 2}]}))
    for prof, said in ((checked, True), (plain, False)):
        assert main(["predict", str(scen), "--profile", str(prof)]) == 0
        assert ("note: profile self-check" in capsys.readouterr().err) == said


def test_validate_exceeded_bound_exits_1(synth, tmp_path, capsys):
    rc = main(["validate", str(synth), "--max-error", "1e-9", "-o", str(tmp_path / "rep")])
    assert rc == 1
    assert "error bound exceeded" in capsys.readouterr().err


def test_validate_bad_input(tmp_path, synth):
    assert main(["validate", str(synth), "--max-error", "-1", "-o", str(tmp_path / "r")]) == 2
    assert main(["validate", str(synth)]) == 2  # no -o
    assert main(["validate", str(synth), "--per-configuration", "-o", str(tmp_path / "r")]) == 2  # bounds nothing


def test_configuration_errors_compare_means_of_the_same_devices():
    """Each configuration's mean prediction against its mean measurement, speedup where every run of it has one;
    the same configuration on another GPU model is another group (a configuration names devices by position)."""
    from dataclasses import replace

    from sim.calibration.validate import RunPrediction, configuration_errors, repeat_spread

    class Run:  # what configuration_errors / repeat_spread read of a RunMeasurement
        def __init__(self, gpu, tps):
            self.config_key, self.trace_level, self.tokens_per_s = "spd n=2", "cycle", tps
            self.environment = {"device_names": [gpu, gpu]}

    def pred(meas_x, pred_x, meas_tps=100.0):
        p = RunPrediction("spd", "spd n=2", "p", "spd", 2, meas_tps, predicted_tokens_per_s=meas_tps * pred_x / meas_x,
                          measured_speedup=meas_x, predicted_speedup=pred_x)
        p.rel_error_speedup = pred_x / meas_x - 1 if meas_x else None
        p.rel_error_tokens_per_s = pred_x / meas_x - 1
        return p

    runs = [Run("H100", 100.0), Run("H100", 120.0), Run("H200", 150.0)]
    preds = [pred(1.0, 1.1, 100.0), pred(1.2, 1.1, 120.0), pred(1.5, 1.5, 150.0)]  # predicted tok/s: 110, 110, 150
    c = configuration_errors(runs, preds)
    assert (c["configurations"], c["repeated"]) == (2, 1)
    assert c["max_abs_rel_error"] == pytest.approx(0.0) and c["median_abs_rel_error"] == pytest.approx(0.0)  # 1.1 vs mean 1.1
    assert repeat_spread(runs)["repeated_configurations"] == 1  # H200's run repeats nothing
    # one row per configuration, as `spd validate --per-configuration` prints it: the H100 pair spreads 20/110
    h100, h200 = c["rows"]
    assert (h100["runs"], h100["unit"], h200["spread"]) == (2, "speedup", None)
    assert h100["measured_mean"] == pytest.approx(1.1) and h100["spread"] == pytest.approx(20 / 110)
    from sim.calibration.report import configuration_table

    lines = configuration_table(c).splitlines()
    assert len(lines) == 4 and lines[0].split()[0] == "configuration" and lines[2].split()[-2:] == ["+0.0%", "18.2%"]
    no_ar = replace(preds[2], rel_error_speedup=None, measured_speedup=None, predicted_speedup=None,
                    predicted_tokens_per_s=165.0, rel_error_tokens_per_s=0.1)  # no AR baseline on the H200
    c = configuration_errors([runs[0], runs[1], Run("H100", 150.0)], [preds[0], preds[1], no_ar])
    assert c["configurations"] == 1  # one run without a speedup: tokens/s of all three, (110+110+165) vs (100+120+150)
    assert c["max_abs_rel_error"] == pytest.approx(385 / 370 - 1)


@pytest.mark.skipif(not CPU_TRACES.is_dir(), reason="no committed CPU traces")
def test_validate_committed_cpu_traces(tmp_path, capsys):
    rc = main(["validate", str(CPU_TRACES), "--max-error", str(CPU_MAX_ERROR), "-o", str(tmp_path / "rep")])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    res = json.loads((tmp_path / "rep" / "validation.json").read_text())
    assert res["summary"]["predicted"] >= 6


S10 = Path(__file__).parents[1] / "traces" / "h100x4_s10"


@pytest.mark.skipif(len(list(S10.glob("*_r?"))) < 39, reason="committed GPU traces not present")
def test_max_error_per_configuration_bounds_the_mean_of_repeats(tmp_path, capsys):
    """Session 10's 39 uninstrumented 4-GPU runs (13 configurations, three repeats each), forecast from the 2-GPU
    profile of another host: one run misses by 7.8% (repeats spread by up to 10.6%), so a 7% bound on every run
    fails; each configuration's mean is within 5.4%, and `--per-configuration` bounds that instead."""
    runs = [str(p) for p in sorted(S10.glob("*_r?"))]
    prof = str(Path(__file__).parents[1] / "profiles" / "h100x4_2gpu_s8.json")
    args = ["validate", *runs, "--profile", prof, "--max-error", "0.07"]
    assert main(args + ["-o", str(tmp_path / "runs")]) == 1
    assert "error bound exceeded (every run)" in capsys.readouterr().err
    assert main(args + ["--per-configuration", "-o", str(tmp_path / "conf")]) == 0
    out = capsys.readouterr().out
    assert "per configuration: each configuration's mean over its runs (13 configurations, 13 run more than once)" in out
    res = json.loads((tmp_path / "conf" / "validation.json").read_text())
    assert res["max_error_on"] == "each configuration's mean" and res["per_configuration"]["max_abs_rel_error"] <= 0.06
    assert "on each configuration's mean: met" in (tmp_path / "conf" / "report.md").read_text()


SHARED = Path(__file__).parents[1] / "traces" / "h100x2_shared_s11"


@pytest.mark.skipif(len(list(SHARED.glob("*"))) < 16, reason="committed GPU traces not present")
def test_max_error_on_the_uninstrumented_repeated_configurations(tmp_path, capsys):
    """`--uninstrumented` bounds the runs recorded without per-op tracing only (the wall clock; full traces are
    calibration inputs) and `--min-repeats 2` the configurations measured twice or more; both are in the report,
    every run is still predicted and listed. Each flag needs what it qualifies; a set with nothing left to bound
    says so and fails."""
    prof = str(Path(__file__).parents[1] / "profiles" / "h100x2_shared_s11.json")
    args = ["validate", str(SHARED), "--profile", prof, "--max-error", "0.05"]
    assert main(args + ["--uninstrumented", "--per-configuration", "--min-repeats", "2", "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "bounded (each configuration's mean of the uninstrumented runs, those measured 2 times or more)" in out
    res = json.loads((tmp_path / "a" / "validation.json").read_text())
    assert res["summary"]["predicted"] == 16 and len(res["per_configuration"]["rows"]) == 10
    assert res["max_error_on"].startswith("each configuration's mean of the uninstrumented runs")
    for bad in (["--min-repeats", "2"], ["--min-repeats", "0", "--per-configuration"]):
        assert main(args + bad + ["-o", str(tmp_path / "b")]) == 2
    assert main(["validate", str(SHARED), "--profile", prof, "--uninstrumented", "-o", str(tmp_path / "b")]) == 2
    capsys.readouterr()
    assert main(["validate", str(CPU_TRACES), "--uninstrumented", "--max-error", "0.5", "-o", str(tmp_path / "c")]) == 1
    assert "nothing to bound" in capsys.readouterr().err
