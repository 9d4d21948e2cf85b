"""The closed-form model of SPD with speculative control (sim/methods/spd_speculative.py): a reject costs n
cycles, the cycle is the longer of the stages' period and rank 0's serial work; the simulator says it has no
model of it."""
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


def test_cycle_is_the_longer_of_stages_and_rank0():
    # stages bound: 2.9 + 0.16 > 0.3 + 1.06 + 0.5
    assert cf.spd_speculative_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3) == pytest.approx(3.06)
    # rank 0 bound: a slow draft
    assert cf.spd_speculative_cycle_ms(1.0, 0.1, 2.0, 0.5, 0.3) == pytest.approx(2.8)
    # never slower than the default protocol's cycle for the same times
    assert cf.spd_speculative_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3) < cf.spd_cycle_ms(2.9, 0.16, 1.06, 0.5, 0.3)


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
    assert spec["cycle_ms"] == pytest.approx(max(18 * 0.08 + 0.16, 0.3 + 1.0 + 0.5))
    assert main(["simulate", str(p)]) == 2
    assert "the simulator has no model of 'spd_speculative'" in capsys.readouterr().err


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
