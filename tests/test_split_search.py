"""`spd split`: the stage split a calibrated profile predicts fastest (sim/calibration/split_search.py)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from sim.calibration.profile import load_profile
from sim.calibration.split_search import best_splits, climb
from sim.cli import main
from sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "h200x4_full_traces.json"


def _scenario(stages: int, alpha: float = 1.0, layers: int = 36, shared: bool = True) -> dict:
    place = {"controller": 0, "stages": list(range(stages))} if shared else \
        {"controller": 0, "stages": list(range(1, stages + 1))}
    return {"name": f"qwen3-4b n={stages}", "target": {"layers": layers, "name": "qwen3-4b", "hidden_size": 2560},
            "acceptance": {"alpha": alpha},
            "methods": [{"method": "spd", "name": "spd", "stages": stages, "draft_layers": 2, "placement": place}]}


def test_climb_finds_the_optimum_of_a_concave_score():
    target = (3, 5, 9, 7)
    best, score, seen = climb(lambda s: -sum((a - b) ** 2 for a, b in zip(s, target)), (6, 6, 6, 6))
    assert best == target and score == 0 and len(seen) > 1 and seen[(6, 6, 6, 6)] == -20


@pytest.mark.skipif(not PROFILE.exists(), reason="committed profile not present")
def test_best_split_equals_exhaustive_search_at_n3():
    """The measured H200 profile: stage 1 shares GPU 0 with the draft, so it gets fewer layers; the local
    search lands on the exhaustive optimum (24 layers, n=3: all 253 splits)."""
    prof = load_profile(PROFILE)
    scen = parse_scenario(_scenario(3, layers=24), "test")
    choice = best_splits(prof, scen, tokens=400)[0]
    from sim.calibration.profile_to_scenario import calibrate_spec, resolve_shape
    from sim.des import simulate

    shape, _ = resolve_shape(prof, 24, "qwen3-4b", 2560)

    def rate(split):
        cal = calibrate_spec(prof, shape, scen.methods[0], scen, spread="constant", split=split)
        return 400 / simulate(cal.scenario, cal.scenario.methods[0], 400, costs=cal.costs).time_ms

    splits = [s for s in itertools.product(range(1, 23), repeat=3) if sum(s) == 24]
    best = max(splits, key=rate)
    assert rate(choice.best) == pytest.approx(rate(best), rel=1e-9)
    assert choice.best[0] < choice.balanced[0] and choice.gain > 0.01
    assert choice.best_tokens_per_s == pytest.approx(1000 * rate(choice.best))


@pytest.mark.skipif(not PROFILE.exists(), reason="committed profile not present")
def test_cli_prints_the_stage_split_argument_and_json(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_scenario(4)))
    assert main(["split", str(path), "--profile", str(PROFILE), "--tokens", "500", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = out["methods"][0]
    assert m["stages"] == 4 and sum(m["best"]) == 36 and m["best_tokens_per_s"] >= m["balanced_tokens_per_s"]
    assert m["stage_split_arg"] == ",".join(map(str, m["best"]))
    # no contention (every rank its own GPU): no reason to move layers off stage 1
    path.write_text(json.dumps(_scenario(4, shared=False)))
    assert main(["split", str(path), "--profile", str(PROFILE), "--tokens", "500"]) == 0
    text = capsys.readouterr().out
    assert "spd run --stage-split" in text and "note: split forecasts are rough" in text


@pytest.mark.parametrize("args, needle", [
    (["--tokens", "0"], "--tokens"),
    ([], "no pipeline method"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    path = tmp_path / "s.json"
    doc = _scenario(4)
    if not args:
        doc["methods"] = [{"method": "ar"}]
    path.write_text(json.dumps(doc))
    assert main(["split", str(path), "--profile", str(PROFILE), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1]
