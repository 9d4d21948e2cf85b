"""Profile format: round trip, version / environment checks, bad inputs (exit 2, one line), published profile."""
from __future__ import annotations

import json
import warnings

import pytest

from sim.calibration.profile import PROFILE_VERSION, ProfileMismatchWarning, load_profile
from sim.calibration.published import build_published_profile, forecast_rows, load_published, wall_cycle_targets
from sim.cli import main
from sim.errors import InputError

from test_calib_fit import SMALL, WIDE, true_profile


def test_round_trip_and_environment_warning(tmp_path):
    prof = true_profile()
    path = tmp_path / "p.json"
    prof.save(path)
    back = load_profile(path)
    assert back.stage == prof.stage and back.hops == prof.hops and back.verify == prof.verify
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_profile(path, {"torch": "synthetic"})  # same stack: silent
    with pytest.warns(ProfileMismatchWarning, match="torch"):
        load_profile(path, {"torch": "2.11.0+cu130"})


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(version=99), "unsupported profile version"),
    (lambda d: d.pop("format"), "not an spd-profile"),
    (lambda d: d["stage"].update(a0_ms="x"), "stage.a0_ms"),
    (lambda d: d.update(hops={"warp": {"mean_ms": 1}}), "hops"),
    (lambda d: d.pop("verify"), "verify"),
    (lambda d: d.update(trace_overhead_ms={"spd": 0.3}), "trace_overhead_ms"),
    (lambda d: d.update(trace_overhead_ms={"spd": {"accept": "x"}}), "trace_overhead_ms"),
    (lambda d: d["stage"].update(rank0_overlap_by_method={"spd": "fast"}), "stage.rank0_overlap_by_method.spd"),
    (lambda d: d["stage"].update(kappa_bw_by_method=[0.1]), "stage.kappa_bw_by_method"),
    (lambda d: d.update(by_method={"spd": {"report": [0.3]}}), "by_method.spd.report"),
    (lambda d: d.update(by_method={"spd": {"report": {"warp": {"mean_ms": 0.3}}}}), "by_method.spd.report"),
])
def test_bad_profiles(tmp_path, mutate, msg):
    d = true_profile().to_json()
    mutate(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=msg):
        load_profile(path)


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    assert main(["calibrate", str(tmp_path / "missing"), "-o", str(tmp_path / "p.json")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["validate", str(tmp_path / "empty"), "-o", str(tmp_path / "rep")]) == 2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trace.jsonl").write_text("{not json\n")
    assert main(["calibrate", str(tmp_path / "run"), "-o", str(tmp_path / "p.json")]) == 2
    (tmp_path / "bad.json").write_text("[]")
    assert main(["predict", "--profile", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 4
    assert not (tmp_path / "p.json").exists()


def test_published_reconciliation_reproduces_the_two_wallclock_points():
    data = load_published()
    prof = build_published_profile(data)
    inst = prof.instrumentation
    # the breakdown's cycles are ~11% longer than the wall clock implies (SPEC.md 1.3)
    t = wall_cycle_targets(data)
    assert t[(4, 4)] == pytest.approx(8.25, abs=0.05) and t[(8, 3)] == pytest.approx(4.75, abs=0.05)
    assert 0.8 < inst["compute_factor"] < 0.95 and 0.7 < inst["fixed_factor"] < 0.95
    rows = forecast_rows(data, prof)
    calib = [r for r in rows if r["role"].startswith("calibration")]
    assert len(calib) == 2
    for r in calib:
        assert r["wallclock_pred"] == pytest.approx(r["published_wallclock"], rel=1e-3)
    fc = [r for r in rows if r["role"] == "forecast"]
    assert len(fc) >= 30 and all(0 < r["wallclock_pred"] < r["theoretical"] for r in fc)


def test_committed_published_profile_is_current(tmp_path):
    """profiles/published_qwen35_4b.json is what `spd calibrate --published` builds (modulo the data path)."""
    from pathlib import Path

    committed = json.loads((Path(__file__).parents[1] / "profiles" / "published_qwen35_4b.json").read_text())
    fresh = build_published_profile(load_published()).to_json()
    for k in ("stage", "draft", "hops", "control", "verify", "instrumentation"):
        assert committed[k] == fresh[k], k


def test_scenario_without_a_shape_names_the_missing_fields(tmp_path, capsys):
    """A scenario whose target has neither a name nor hidden_size: one line saying so (not "named None")."""
    prof = tmp_path / "p.json"
    true_profile().save(prof)
    scen = tmp_path / "s.json"
    scen.write_text(json.dumps({"target": {"layers": 8}, "acceptance": {"alpha": 0.8},
                                "methods": [{"method": "ar"}, {"method": "spd", "stages": 2, "draft_layers": 1}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProfileMismatchWarning)
        assert main(["predict", str(scen), "--profile", str(prof)]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert len(err) == 1 and "target.hidden_size" in err[0] and "None" not in err[0]


def test_trace_overhead_comes_off_rank0_serial_costs_only_for_untraced_runs(tmp_path):
    """A profile with a measured trace overhead: an uninstrumented prediction takes it off verify (then
    control, control hop), the refill cycles' cost and the extra of a reject; a full-trace prediction keeps
    the terms as fitted. The field survives a save / load."""
    from dataclasses import replace

    from sim.calibration.profile import Dist
    from sim.calibration.profile_to_scenario import calibrated_method

    base = replace(true_profile(), verify_fill=Dist(0.3))
    over = {"spd": {"accept": 0.05, "fill": 0.2, "reject": 0.15}, "ar_pipeline": {"ar": 10.0}}
    prof = replace(base, trace_overhead_ms=over)
    prof.save(tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json").trace_overhead_ms == over
    shape = SMALL
    costs = {}
    for untraced in (False, True):
        for method in ("spd", "ar_pipeline"):
            c = calibrated_method(prof, shape, method, stages=2, spread="constant", untraced=untraced)
            costs[(method, untraced)] = {k: getattr(c.costs, k).mean_ms if getattr(c.costs, k) else None
                                         for k in ("verify", "verify_fill", "control", "control_hop", "flush")}
            if untraced:
                assert any("trace overhead" in n for n in c.notes)
    traced, untraced = costs[("spd", False)], costs[("spd", True)]
    assert untraced["verify"] == pytest.approx(traced["verify"] - 0.05)
    assert untraced["verify_fill"] == pytest.approx(traced["verify_fill"] - 0.2)
    assert untraced["flush"] == pytest.approx(max(traced["flush"] - 0.1, 0.0))
    assert untraced["control"] == pytest.approx(traced["control"])
    arp = costs[("ar_pipeline", True)]  # 10 ms is more than rank 0's serial costs: all of them go, none below 0
    assert arp["verify"] == arp["control"] == arp["control_hop"] == 0.0
    base_costs = calibrated_method(base, shape, "spd", stages=2, spread="constant").costs
    assert base_costs.verify.mean_ms == pytest.approx(traced["verify"])  # no overhead measured: unchanged


def test_ar_pipeline_trace_overhead_per_rank_grows_with_its_serial_ranks():
    """The AR pipeline's trace overhead is fitted per rank on its serial path (controller + n stages): the
    uninstrumented prediction takes (n + 1) times it off, and its tokens/s rises with n accordingly; a per-cycle
    value (profiles before session 10) comes off as it is at every n."""
    from dataclasses import replace

    from sim.calibration.profile_to_scenario import calibrated_method, trace_overhead_ms
    from sim.des import simulate

    prof = replace(true_profile(), trace_overhead_ms={"ar_pipeline": {"ar_per_rank": 0.02}, "spd": {"accept": 0.05}})
    assert trace_overhead_ms(prof, "ar_pipeline", 2) == {"ar": pytest.approx(0.06)}
    assert trace_overhead_ms(prof, "ar_pipeline", 4) == {"ar": pytest.approx(0.10)}
    assert trace_overhead_ms(prof, "spd", 4) == {"accept": 0.05}
    old = replace(prof, trace_overhead_ms={"ar_pipeline": {"ar": 0.06}})
    assert trace_overhead_ms(old, "ar_pipeline", 4) == {"ar": 0.06}
    for both in ({"ar": 0.06, "ar_per_rank": 0.02}, {"ar_per_rank": 0.02, "ar": 0.06}):  # per rank wins, any order
        assert trace_overhead_ms(replace(prof, trace_overhead_ms={"ar_pipeline": both}), "ar_pipeline", 4) == \
            {"ar": pytest.approx(0.10)}

    def ms_per_token(p, n, untraced):
        c = calibrated_method(p, SMALL, "ar_pipeline", stages=n, spread="constant", untraced=untraced)
        r = simulate(c.scenario, c.scenario.methods[0], tokens=64, seed=0, costs=c.costs)
        return 1e3 / r.tokens_per_s

    for n, ranks in ((2, 3), (4, 5)):
        saved = ms_per_token(prof, n, False) - ms_per_token(prof, n, True)
        assert saved == pytest.approx(0.02 * ranks, abs=2e-3), (n, saved)


def test_per_rank_trace_overhead_is_the_ar_pipelines_only_and_needs_version_2(tmp_path):
    """A per-rank trace overhead means something only on the AR pipeline's serial path, and only a version-2 profile
    may hold one (an older build would read it as no overhead): the loader says so in one line; a version-1 profile
    without one still loads."""
    from dataclasses import replace

    base = replace(true_profile(), trace_overhead_ms={"ar_pipeline": {"ar_per_rank": 0.02}})
    base.save(tmp_path / "p.json")
    obj = json.loads((tmp_path / "p.json").read_text())
    assert obj["version"] == PROFILE_VERSION >= 2 and load_profile(tmp_path / "p.json").trace_overhead_ms == base.trace_overhead_ms
    for change, what in (({"version": 1}, "from profile version 2"),
                         ({"trace_overhead_ms": {"spd": {"accept_per_rank": 0.1}}}, "the AR pipeline's only")):
        (tmp_path / "bad.json").write_text(json.dumps({**obj, **change}))
        with pytest.raises(InputError, match=what):
            load_profile(tmp_path / "bad.json")
    (tmp_path / "v1.json").write_text(json.dumps({**obj, "version": 1, "trace_overhead_ms": {"ar_pipeline": {"ar": 0.4}}}))
    assert load_profile(tmp_path / "v1.json").trace_overhead_ms == {"ar_pipeline": {"ar": 0.4}}


def test_stage1_start_floor_sets_the_ar_pipeline_control_hop(tmp_path):
    """Stage 1 starts at max(broadcast, floor): the control hop is what the floor leaves after the broadcast,
    none once the broadcast is longer; without a floor the pooled control hop stays. Survives save / load."""
    from dataclasses import replace

    from sim.calibration.profile import Dist, MethodTerms
    from sim.calibration.profile_to_scenario import calibrated_method

    base = true_profile()
    prof = replace(base, by_method={"ar_pipeline": MethodTerms(stage1_start_floor=Dist(0.4))})
    prof.save(tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json").by_method["ar_pipeline"].stage1_start_floor.mean_ms == 0.4

    def costs(p, n):
        c = calibrated_method(p, SMALL, "ar_pipeline", stages=n, spread="constant", untraced=False).costs
        return c.control.mean_ms, c.control_hop.mean_ms

    for n in (2, 4):
        control, hop = costs(prof, n)
        assert hop == pytest.approx(max(0.4 - control, 0.0))
    assert costs(base, 2)[1] == pytest.approx(base.control_hop.mean_ms)
    big = replace(prof, by_method={"ar_pipeline": MethodTerms(stage1_start_floor=Dist(0.0))})
    assert costs(big, 2)[1] == 0.0


def test_a_measured_shapes_ar_step_is_predicted_as_measured(tmp_path):
    """The speedup's denominator: the AR step the profile measured for the shape (or for one of the same
    dimensions under another name), else the line L x layer + extra. Survives save / load."""
    from dataclasses import fields, replace

    from sim.calibration.extract import ModelShape
    from sim.calibration.profile_to_scenario import calibrated_method

    base = true_profile()
    line = calibrated_method(base, SMALL, "ar", spread="constant").scenario.ar_token_ms()
    prof = replace(base, ar_step_ms_by_shape={SMALL.key: 1.234})
    prof.save(tmp_path / "p.json")
    prof = load_profile(tmp_path / "p.json")
    assert calibrated_method(prof, SMALL, "ar", spread="constant").scenario.ar_token_ms() == pytest.approx(1.234)
    renamed = ModelShape("tiny-real", *[getattr(SMALL, f.name) for f in fields(SMALL)][1:])
    assert renamed.key != SMALL.key and renamed.key.split(":", 1)[1] == SMALL.key.split(":", 1)[1]
    assert calibrated_method(prof, renamed, "ar", spread="constant").scenario.ar_token_ms() == pytest.approx(1.234)
    assert calibrated_method(prof, WIDE, "ar", spread="constant").scenario.ar_token_ms() != pytest.approx(1.234)
    assert line != pytest.approx(1.234)


def test_a_trained_drafters_timing_serves_only_its_own_model():
    """A trained PDM is one model's drafter (fitted as pdm@<model>): another model's prediction takes the replay
    draft's timing (sized to the target), with a note when a PDM was asked for; a model-agnostic 'pdm' (the
    published profile's base) serves any model; other sources are used as named."""
    from sim.calibration.profile import draft_fit_key, resolve_draft_source

    assert draft_fit_key("pdm", "SmolLM2") == "pdm@SmolLM2" and draft_fit_key("replay", "SmolLM2") == "replay"
    draft = {"replay": object(), "pdm@SmolLM2": object()}
    assert resolve_draft_source(draft, None, "SmolLM2") == ("pdm@SmolLM2", None)
    assert resolve_draft_source(draft, "pdm", "SmolLM2") == ("pdm@SmolLM2", None)
    assert resolve_draft_source(draft, None, "qwen3-4b") == ("replay", None)
    src, note = resolve_draft_source(draft, "pdm", "qwen3-4b")
    assert src == "replay" and "not measured" in note
    assert resolve_draft_source(draft, "replay", "SmolLM2") == ("replay", None)
    assert resolve_draft_source({"pdm": object()}, None, "any") == ("pdm", None)


def test_uninstrumented_contention_round_trips_and_needs_version_3(tmp_path):
    """kappa = c x T for uninstrumented runs with stages sharing a device (session 11): saved and read back, used
    only where asked (``untraced``) and only for the method fitted; a version-2 file may not carry it (an older
    build would predict those runs with the full-trace kappa without a word)."""
    from dataclasses import replace

    from sim.calibration.profile import DeviceShare

    p0 = true_profile()
    st = replace(p0.stage, untraced_kappa_per_ms_by_method={"spd": 0.2}, untraced_forward_range_ms={"spd": [1.0, 2.0]})
    replace(p0, stage=st).save(tmp_path / "p.json")
    back = load_profile(tmp_path / "p.json").stage
    assert back.untraced_kappa_per_ms_by_method == {"spd": 0.2} and back.untraced_forward_range_ms == {"spd": [1.0, 2.0]}
    share, key, mp = DeviceShare(2, False), "x", 10.0
    t = back.alone_ms(4, key, mp)
    assert back.forward_ms(4, key, mp, share, "spd", untraced=True) == pytest.approx(t * (1 + 0.2 * t))
    assert back.forward_ms(4, key, mp, share, "spd") == back.forward_ms(4, key, mp, share, "spd", untraced=False)
    assert back.forward_ms(4, key, mp, share, "ppsd", untraced=True) == back.forward_ms(4, key, mp, share, "ppsd")
    assert back.forward_ms(4, key, mp, DeviceShare(1, False), "spd", untraced=True) == pytest.approx(t)
    obj = json.loads((tmp_path / "p.json").read_text())
    (tmp_path / "v2.json").write_text(json.dumps({**obj, "version": 2}))
    with pytest.raises(InputError, match="from profile version 3"):
        load_profile(tmp_path / "v2.json")
