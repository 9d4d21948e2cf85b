"""The model of SPD with speculative control (sim/methods/spd_speculative.py, sim/des/speculative.py): a reject
costs n cycles; the cycle is the stages' period unless rank 0 falls behind; simulator and closed form agree."""
import json

import numpy as np
import pytest

from sim import closed_form as cf
from sim.cli import main


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_tokens_per_cycle_counts_a_reject_as_n_cycles(n):
    a = np.linspace(0.0, 1.0, 11)
    r = cf.spd_speculative_tokens_per_cycle(a, n)
    assert r == pytest.approx(1.0 / (1.0 + n * (1.0 - a)))
    assert r[-1] == pytest.approx(cf.spd_tokens_per_cycle(1.0, n))  # no rejects: the same as SPD
    assert np.all(r[:-1] < cf.spd_tokens_per_cycle(a[:-1], n))
    N = 64
    refills = (N - 2) * (1 - a)  # finite length: K_wall = N + n - 2 + n R, i.e. SPD's K plus one cycle per refill
    assert cf.spd_speculative_tokens_per_cycle(a, n, N) == pytest.approx(N / (cf.spd_cycles(N, n, refills) + refills))


def test_cycle_is_the_stage_unless_rank0_falls_behind():
    # stages bound: rank 0's loop (2.9 + 2 x 0.16 + 0.3 + 1.06 + 0.5) / 2 = 2.54 < 2.9
    assert cf.spd_speculative_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3, 2) == pytest.approx(2.9)
    # rank 0 bound: a slow draft; its own work 2.8 per cycle
    assert cf.spd_speculative_cycle_ms(1.0, 0.1, 2.0, 0.5, 0.3, 2) == pytest.approx(2.8)
    # in between: the GO of c+2 needs the last stage's report of c (deep pipeline, slow hops)
    assert cf.spd_speculative_cycle_ms(1.0, 0.3, 0.5, 0.3, 0.2, 8) == pytest.approx((1.0 + 8 * 0.3 + 1.0) / 2)
    # never slower than the default protocol's cycle for the same times
    assert cf.spd_speculative_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3, 2) < cf.spd_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3)


@pytest.mark.parametrize("layer,draft_layer,n", [(0.08, 0.5, 2), (0.01, 0.5, 2), (0.08, 0.2, 4), (0.02, 0.2, 8)])
def test_simulator_agrees_with_the_closed_form_at_alpha_1(layer, draft_layer, n):
    """Constant times, no rejects: the dataflow model's cycle is the closed form's, stage- or rank-0-bound."""
    from sim.des import simulate
    from sim.scenario import parse_scenario

    doc = {"name": "spec", "target": {"name": "t", "layers": 36},
           "timing_ms": {"layer": layer, "ar_token": 5.6, "hop": 0.05, "draft_layer": draft_layer, "verify": 0.4,
                         "cycle_overhead": 0.25, "stage_overhead": 0.0},
           "acceptance": {"alpha": 1.0}, "methods": [{"method": "spd_speculative", "stages": n, "draft_layers": 2}]}
    scen = parse_scenario(doc, "t.json")
    spec = scen.methods[0]
    res = simulate(scen, spec, 400, seed=0)
    want = cf.spd_speculative_cycle_ms(36 / n * layer, 0.05, 2 * draft_layer, 0.4, 0.25, n)
    steady = res.records.duration_ms[n + 5:]  # past the fill
    assert np.median(steady) == pytest.approx(float(want), rel=0.03)


def test_simulator_counts_a_reject_as_n_cycles():
    from sim.des import simulate
    from sim.scenario import parse_scenario

    doc = {"name": "spec", "target": {"name": "t", "layers": 36},
           "timing_ms": {"layer": 0.08, "ar_token": 5.6, "hop": 0.05, "draft_layer": 0.5, "verify": 0.4,
                         "cycle_overhead": 0.25, "stage_overhead": 0.0},
           "acceptance": {"alpha": 0.7}, "methods": [{"method": "spd_speculative", "stages": 3, "draft_layers": 2}]}
    scen = parse_scenario(doc, "t.json")
    res = simulate(scen, scen.methods[0], 500, seed=1)
    n, N = 3, 501
    assert res.refill_rejects > 50 and res.cycles == N + n - 2 + n * res.refill_rejects


def _scenario(tmp_path, alpha):
    doc = {"name": "spec", "target": {"name": "t", "layers": 36},
           "timing_ms": {"layer": 0.08, "ar_token": 5.6, "hop": 0.16, "draft_layer": 0.5, "verify": 0.5,
                         "cycle_overhead": 0.3, "stage_overhead": 0.0},
           "acceptance": {"alpha": alpha},
           "methods": [{"method": "spd", "stages": 2, "draft_layers": 2},
                       {"method": "spd_speculative", "stages": 2, "draft_layers": 2}]}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(doc))
    return p


def test_predict_and_simulate(tmp_path, capsys):
    p = _scenario(tmp_path, 0.8)
    assert main(["predict", str(p), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = rows["methods"] if isinstance(rows, dict) else rows
    spd, spec = rows[0], rows[1]
    assert spec["tokens_per_cycle"] == pytest.approx(1 / 1.4) and spd["tokens_per_cycle"] == pytest.approx(1 / 1.2)
    assert spec["cycle_ms"] == pytest.approx(cf.spd_speculative_cycle_ms(18 * 0.08, 0.16, 1.0, 0.5, 0.3, 2))
    assert main(["simulate", str(p), "--tokens", "300"]) == 0
    assert "spd speculative-control n=2" in capsys.readouterr().out


def test_profile_gives_spd_speculative_the_spd_cost_terms():
    """A profile calibrated on default-control runs predicts speculative control from the same cost terms;
    only the cycle formula differs (so the committed forecast scenario runs: docs/perf-notes.md)."""
    from pathlib import Path

    from sim.calibration.profile import load_profile
    from sim.calibration.profile_to_scenario import profile_to_scenarios
    from sim.scenario import load_scenario

    root = Path(__file__).parents[1]
    prof = load_profile(root / "profiles" / "h100x2_full_traces.json")
    base = load_scenario(root / "scenarios" / "spec_control_qwen3-4b_n2.json")
    cals = {c.scenario.methods[0].name: c for c in profile_to_scenarios(prof, base)}
    a, b = cals["spd a=1.0"], cals["spd_speculative a=1.0"]
    assert a.scenario.timing == b.scenario.timing and a.costs == b.costs


def test_simulator_with_uneven_stages_and_random_times_finishes():
    """Stages that drift apart (an uneven split, lognormal forwards, a shared device) still meet every GO."""
    from sim.des import simulate
    from sim.scenario import parse_scenario

    doc = {"name": "spec", "target": {"name": "t", "layers": 36},
           "timing_ms": {"layer": {"dist": "lognormal", "mean": 0.05, "cv": 0.3}, "ar_token": 2.0, "hop": 0.05,
                         "draft_layer": 0.3, "verify": 0.2, "cycle_overhead": 0.1, "stage_overhead": 0.0},
           "acceptance": {"alpha": 0.8},
           "methods": [{"method": "spd_speculative", "stages": 4, "draft_layers": 2, "split": [3, 15, 6, 12],
                        "placement": {"controller": 0, "stages": [0, 1, 1, 2]}}]}
    scen = parse_scenario(doc, "t.json")
    res = simulate(scen, scen.methods[0], 300, seed=3)
    assert res.tokens == 300 and res.cycles == 301 + 4 - 2 + 4 * res.refill_rejects
