"""`spd simulate`: one JSON object, reproducible output, model choice, bad input -> one line and exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim.cli import main
from sim.des import simulate
from test_des_helpers import scenario

JITTER = {"target": {"layers": 16, "hidden_size": 1024},
          "timing_ms": {"layer": {"dist": "lognormal", "mean": 0.5, "cv": 0.2}, "hop": 0.04, "draft_layer": 0.5,
                        "verify": {"dist": "empirical", "samples": [0.3, 0.4, 0.6]}, "cycle_overhead": 0.8},
          "topology": {"bandwidth_gbps": 50},
          "acceptance": {"markov": {"p_accept_after_accept": 0.9, "p_accept_after_reject": 0.4}},
          "methods": [{"method": "ar"}, {"method": "spd", "stages": 4, "draft_layers": 2},
                      {"method": "spd", "stages": 4, "draft_layers": 2, "name": "spd shared",
                       "placement": {"controller": 0, "stages": [1, 1, 2, 2]}},
                      {"method": "eagle3", "steps": 4, "draft_layers": 1}]}


@pytest.fixture()
def scen_file(tmp_path):
    p = tmp_path / "jitter.json"
    p.write_text(json.dumps(JITTER))
    return p


def _run_json(capsys, *argv):
    assert main(["simulate", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object
    return json.loads(out)


def test_same_seed_same_output_other_seed_differs(scen_file, capsys):
    a = _run_json(capsys, str(scen_file), "--tokens", "2000", "--seed", "3")
    b = _run_json(capsys, str(scen_file), "--tokens", "2000", "--seed", "3")
    c = _run_json(capsys, str(scen_file), "--tokens", "2000", "--seed", "4")
    assert a == b
    assert a["methods"][1]["time_ms"] != c["methods"][1]["time_ms"]


def test_json_fields_and_model_choice(scen_file, capsys):
    obj = _run_json(capsys, str(scen_file), "--tokens", "500")
    by = {m["name"]: m for m in obj["methods"]}
    assert set(by) == {"ar", "spd n=4 Ls=2", "spd shared", "eagle3 m=4 Ls=1"}
    assert by["spd n=4 Ls=2"]["model"] == "fast" and by["eagle3 m=4 Ls=1"]["model"] == "fast"
    assert by["spd shared"]["model"] == "dataflow" and "device(s) [1, 2]" in by["spd shared"]["model_reason"]
    m = by["spd n=4 Ls=2"]
    for key in ("tokens_per_s", "speedup", "accept_length", "cycles", "rejects", "busy_fraction", "bubble_ms", "closed_form"):
        assert key in m
    assert set(m["bubble_ms"]) == {"stage 1", "stage 2", "stage 3", "stage 4"}
    # sharing two devices between four stages is slower than one device each
    assert by["spd shared"]["tokens_per_s"] < m["tokens_per_s"]


def test_method_filter_table_and_records(scen_file, tmp_path, capsys):
    rec = tmp_path / "rec.csv"
    assert main(["simulate", str(scen_file), "--tokens", "300", "--method", "eagle3", "--records", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "eagle3 m=4 Ls=1" in out and "spd n=4" not in out and "fast model" in out
    lines = rec.read_text().splitlines()
    assert lines[0].startswith("method,cycle,start_ms") and all(l.startswith("eagle3 m=4 Ls=1,") for l in lines[1:])


def test_dataflow_forced_equals_fast(scen_file, capsys):
    a = _run_json(capsys, str(scen_file), "--tokens", "1500", "--method", "spd n=4 Ls=2", "--model", "fast")["methods"][0]
    b = _run_json(capsys, str(scen_file), "--tokens", "1500", "--method", "spd n=4 Ls=2", "--model", "dataflow")["methods"][0]
    assert a["cycles"] == b["cycles"] and a["time_ms"] == pytest.approx(b["time_ms"], rel=1e-12)


@pytest.mark.parametrize("argv,needle", [
    (["--tokens", "0"], "--tokens"),
    (["--method", "nothing"], "--method"),
    (["--model", "fast", "--method", "spd shared"], "not exact"),
    (["--model", "fast", "--trace", "t.json"], "--trace"),
])
def test_bad_input_one_line_exit_2(scen_file, capsys, argv, needle):
    assert main(["simulate", str(scen_file), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_bad_scenario_file(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({**JITTER, "timing_ms": {"layer": -1}}))
    assert main(["simulate", str(p)]) == 2
    assert "timing_ms.layer" in capsys.readouterr().err


def test_default_scenario_runs_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "sim.cli", "simulate", "--tokens", "500", "--json"], capture_output=True,
                         text=True, check=True).stdout
    obj = json.loads(out)
    assert obj["methods"] and all(m["tokens_per_s"] > 0 for m in obj["methods"])


def test_api_takes_scenario_objects_and_cost_overrides():
    """The calibration path: build the per-cycle fixed costs from a measured profile without a file."""
    from sim.des import CycleCosts, TimeSpec

    sc = scenario([{"method": "spd", "stages": 4, "draft_layers": 1}], acceptance={"sequence": [1]}, layers=8,
                  hop=0.1, draft_layer=0.5, verify=0.2, cycle_overhead=0.3)
    costs = CycleCosts(control=TimeSpec.const(0.1), verify=TimeSpec.const(0.2), bookkeeping=TimeSpec.const(0.15),
                       flush=TimeSpec.const(1.0), control_hop=TimeSpec.const(0.05))
    r = simulate(sc, sc.methods[0], 100, seed=0, costs=costs)
    # 0.1 + max(0.5, 0.05 + 2 + 0.1) + 0.2 + 0.15 per cycle, K = 100 + 3
    assert r.time_ms == pytest.approx(103 * 2.6)
