"""`spd predict` / `spd sweep` / `spd reproduce` end to end, plus the closed-form predictions of a scenario by hand."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.closed_form import predict_grid, predict_scenario
from sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_scenario_bad_input import GOOD, spd  # noqa: E402


def test_smoke_predict_embedded_default():
    r = spd("predict")
    assert r.returncode == 0, r.stderr
    assert "spd n=8 Ls=3" in r.stdout and "theory x" in r.stdout
    j = spd("predict", "--json")
    obj = json.loads(j.stdout)  # exactly one JSON object
    assert list(obj) == ["methods"]
    methods = [m["method"] for m in obj["methods"]]
    assert set(methods) == {"ar", "ar_pipeline", "sd", "eagle3", "ppsd", "spd"}
    for m in obj["methods"]:
        for k in ("name", "method", "theoretical_speedup", "wallclock_speedup", "tokens_per_s", "cycle_ms", "accept_length"):
            assert m[k] is not None, (m["name"], k)
    assert obj["methods"][0]["wallclock_speedup"] == pytest.approx(1.0)


def test_list_methods():
    r = spd("predict", "--list-methods")
    assert r.returncode == 0 and {line.split()[0] for line in r.stdout.splitlines()} == {"ar", "ar_pipeline", "sd", "eagle3", "ppsd", "spd", "spd_speculative"}


def test_predictions_by_hand():
    preds = {p.method: p for p in predict_scenario(parse_scenario(GOOD, "good.json"))}
    r = 1 / (1 + 7 * 0.2)
    assert preds["spd"].theoretical_speedup == pytest.approx(8 * r)
    assert preds["spd"].cycle_ms == pytest.approx(0.8 + max(3.0, 4.0 + 0.1) + 0.43)
    assert preds["spd"].wallclock_speedup == pytest.approx(r * 32 / 5.33)
    assert preds["spd"].details["draft_hidden"] is True and preds["spd"].details["draft_slack_ms"] == pytest.approx(1.1)
    assert preds["ppsd"].theoretical_speedup == pytest.approx(8 * r * 32 / (8 + 32))
    tau = (1 - 0.7**8) / 0.3
    assert preds["eagle3"].accept_length == pytest.approx(tau)
    assert preds["eagle3"].theoretical_speedup == pytest.approx(tau * 32 / 39)
    assert preds["sd"].theoretical_speedup == pytest.approx((1 - 0.8**5) / (0.2 * 1.2))
    assert preds["ar_pipeline"].cycle_ms == pytest.approx(0.8 + 32 + 4 * 0.1 + 0.43)


def test_uneven_split_per_position_and_stage_forward():
    s = dict(GOOD, target={"layers": 30}, methods=[
        {"method": "spd", "stages": 4, "draft_layers": 2},  # balanced 8/8/7/7
        {"method": "spd", "stages": 4, "draft_layers": 2, "split": [6, 8, 8, 8], "stage_forward_ms": [6, 8, 9, 8]},
        {"method": "eagle3", "steps": 3, "acceptance": {"per_position": [0.9, 0.5]}}])
    p0, p1, p2 = predict_scenario(parse_scenario(s, "u.json"))
    assert p0.details["stage_layers"] == [8, 8, 7, 7] and p0.details["pipeline_factor"] == pytest.approx(30 / 8)
    assert p0.theoretical_speedup == pytest.approx(p0.tokens_per_cycle * 30 / 8)
    assert p1.cycle_ms == pytest.approx(0.8 + 9 + 0.1 + 0.43)  # the slowest measured stage
    assert p2.accept_length == pytest.approx(1 + 0.9 + 0.9 * 0.5 + 0.9 * 0.5 * 0.5)  # last rate repeats


def test_finite_tokens_option():
    s = dict(GOOD, methods=[{"method": "spd", "stages": 16, "draft_layers": 2, "tokens": 512, "acceptance": {"alpha": 0.95}}])
    (p,) = predict_scenario(parse_scenario(s, "f.json"))
    steady = 16 / (1 + 15 * 0.05)
    assert p.accept_length == pytest.approx(16 * 512 / (512 + 14 + 15 * 510 * 0.05))
    assert 0.98 < p.accept_length / steady < 0.99


def test_predict_grid_matches_scalar_predict():
    scen = parse_scenario(GOOD, "good.json")
    spec = scen.methods[1]
    g = predict_grid(scen, spec, alpha=np.array([0.5, 0.8])[:, None], stages=np.array([4, 8])[None, :])
    assert g["theoretical_speedup"].shape == (2, 2)
    (p,) = [q for q in predict_scenario(scen) if q.method == "spd"]
    assert g["wallclock_speedup"][1, 1] == pytest.approx(p.wallclock_speedup)


def test_sweep_csv(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(GOOD))
    out = tmp_path / "out.csv"
    r = spd("sweep", str(path), "--stages", "2,4,8,16", "--alpha", "0.5:0.95:0.05", "--hop", "0.01,0.05,0.1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    by = {}
    for row in rows:
        by.setdefault(row["method"], []).append(row)
    assert len(by["spd"]) == 4 * 10 * 3 and len(by["ppsd"]) == 120 and len(by["ar_pipeline"]) == 12
    assert len(by["eagle3"]) == 10 and len(by["sd"]) == 10 and len(by["ar"]) == 1
    row = next(x for x in by["spd"] if x["stages"] == "8" and x["alpha"] == "0.8" and x["hop_ms"] == "0.1")
    assert float(row["wallclock_speedup"]) == pytest.approx((1 / 2.4) * 32 / 5.33, rel=1e-5)


def test_sweep_bad_option(tmp_path):
    r = spd("sweep", "--alpha", "0.9:0.5:0.1", "-o", str(tmp_path / "x.csv"))
    assert r.returncode == 2 and "--alpha" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()
