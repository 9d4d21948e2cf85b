"""Every bad-input case of issue 2 item 7: exit status 2, one line on stderr naming the file and the field."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "target": {"layers": 32},
    "timing_ms": {"layer": 1.0, "ar_token": 32.0, "stage_overhead": 0.0, "hop": 0.1, "draft_layer": 1.0, "verify": 0.43, "cycle_overhead": 0.8},
    "acceptance": {"alpha": 0.8},
    "methods": [{"method": "ar"}, {"method": "spd", "stages": 8, "draft_layers": 3},
                {"method": "eagle3", "steps": 7, "draft_layers": 1, "acceptance": {"alpha": 0.7}},
                {"method": "ppsd", "stages": 8, "draft_layers": 1}, {"method": "sd", "gamma": 4, "cost_ratio": 0.05},
                {"method": "ar_pipeline", "stages": 4}],
}


def spd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def edited(**changes):
    s = copy.deepcopy(GOOD)
    for path, value in changes.items():
        obj, keys = s, path.split("__")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        last = keys[-1]
        if value is _DELETE:
            del obj[last]
        elif isinstance(obj, list):
            obj[int(last)] = value
        else:
            obj[last] = value
    return s


_DELETE = object()

CASES = {
    "unknown method": (edited(methods__0={"method": "medusa"}), "methods[0].method"),
    "alpha above 1": (edited(acceptance={"alpha": 1.5}), "acceptance.alpha"),
    "alpha below 0 per method": (edited(methods__2__acceptance={"alpha": -0.1}), "methods[2].acceptance.alpha"),
    "spd one stage": (edited(methods__1__stages=1), "methods[1].stages"),
    "more stages than layers": (edited(methods__3__stages=40), "methods[3].stages"),
    "split not summing": (edited(methods__1__split=[4, 4, 4, 4, 4, 4, 4, 3]), "methods[1].split"),
    "split wrong length": (edited(methods__1__split=[8, 8, 8, 8]), "methods[1].split"),
    "negative time": (edited(timing_ms__hop=-0.1), "timing_ms.hop"),
    "missing draft_layer timing": (edited(timing_ms__draft_layer=_DELETE), "timing_ms.draft_layer"),
    "missing layer timing for pipelines": (edited(timing_ms__layer=_DELETE, methods__0={"method": "ar"}), "timing_ms.layer"),
    "missing required gamma": (edited(methods__4__gamma=_DELETE), "methods[4].gamma"),
    "missing required stages": (edited(methods__1__stages=_DELETE), "methods[1].stages"),
    "missing required draft_layers": (edited(methods__3__draft_layers=_DELETE), "methods[3].draft_layers"),
    "missing acceptance": (edited(acceptance=_DELETE), "methods[1].acceptance"),
    "wrong version": (edited(version=7), "version"),
    "unknown key": (edited(methods__1__stagez=3), "methods[1]"),
    "stage_forward_ms wrong length": (edited(methods__5__stage_forward_ms=[1.0, 2.0]), "methods[5].stage_forward_ms"),
    "spd tokens too small": (edited(methods__1__tokens=1), "methods[1].tokens"),
    "no methods": (edited(methods=[]), "methods"),
    "zero AR token time": (edited(timing_ms__ar_token=0), "timing_ms.ar_token"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_exit_2_one_line(case, tmp_path):
    obj, field = CASES[case]
    path = tmp_path / "scen.json"
    path.write_text(json.dumps(obj))
    r = spd("predict", str(path))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and field in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"target": {"layers": 32},')
    r = spd("predict", str(path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert str(path) in r.stderr and "malformed JSON" in r.stderr


def test_missing_file(tmp_path):
    r = spd("predict", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "nope.json" in r.stderr and "not found" in r.stderr


def test_good_scenario_passes(tmp_path):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    r = spd("predict", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert [m["method"] for m in json.loads(r.stdout)["methods"]] == ["ar", "spd", "eagle3", "ppsd", "sd", "ar_pipeline"]
