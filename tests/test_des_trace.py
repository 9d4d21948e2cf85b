"""The timeline of a short SPD run, read back from the Chrome trace written by `spd simulate --trace`."""
from __future__ import annotations

import json

import pytest

from sim.cli import main
from sim.des import read_trace
from sim.des.trace import CONTROLLER_TID, CYCLE_TID

N = 4
# one outcome per verification: accept, accept, reject (refill), accept x3
SEQ = [1, 1, 0, 1, 1, 1]


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace")
    scen = {"target": {"layers": 8}, "acceptance": {"sequence": SEQ},
            "timing_ms": {"layer": 1.0, "hop": 0.1, "draft_layer": 1.5, "verify": 0.2, "cycle_overhead": 0.3},
            "methods": [{"method": "spd", "stages": N, "draft_layers": 1}]}
    (d / "s.json").write_text(json.dumps(scen))
    assert main([ "simulate", str(d / "s.json"), "--tokens", str(len(SEQ)), "--trace", str(d / "t.json"), "--json"]) == 0
    return read_trace(d / "t.json")


def _spans(events, tid, name=None):
    return sorted((e for e in events if e["ph"] == "X" and e["tid"] == tid and (name is None or e["name"] == name)),
                  key=lambda e: e["ts"])


def test_fill_steady_reject_refill(events):
    cycles = _spans(events, CYCLE_TID)
    # K = N + n - 2 + (n-1)R = 7 + 2 + 3 = 12 (N = 6 decoded + the prefill token, one refilling reject)
    assert len(cycles) == 12
    phases = [c["args"]["phase"] for c in cycles]
    assert phases == ["fill"] * 3 + ["steady"] * 3 + ["refill"] * 3 + ["steady"] * 3
    assert [c["args"]["in_flight"] for c in cycles] == [1, 2, 3, 4, 4, 4, 1, 2, 3, 4, 4, 4]
    assert [c["args"]["outcome"] for c in cycles] == [-1, -1, -1, 1, 1, 0, -1, -1, -1, 1, 1, 1]
    # instants on the controller's track: the reject at cycle 6 flushes; refill cycles 7-9 commit nothing
    inst = [(e["name"], e["args"]["cycle"]) for e in events if e["ph"] == "i" and e["tid"] == CONTROLLER_TID]
    assert inst == [("accept", 4), ("accept", 5), ("reject", 6), ("flush", 6), ("accept", 10), ("accept", 11), ("accept", 12)]


def test_each_cycle_runs_the_stages_holding_a_token(events):
    cycles = _spans(events, CYCLE_TID)
    for c in cycles:
        k = int(c["name"].split()[1])
        ran = [s for s in range(1, N + 1) for e in _spans(events, s, "forward") if e["args"]["cycle"] == k]
        assert ran == list(range(1, c["args"]["in_flight"] + 1))


def test_draft_overlaps_the_stage_forwards(events):
    drafts = _spans(events, CONTROLLER_TID, "draft (PDM)")
    assert len(drafts) == 12
    for d in drafts:
        fwd = [e for s in range(1, N + 1) for e in _spans(events, s, "forward") if e["args"]["cycle"] == d["args"]["cycle"]]
        assert fwd and all(f["ts"] < d["ts"] + d["dur"] and d["ts"] < f["ts"] + f["dur"] for f in fwd)
        # verify starts once both the draft and the last report are in: 0.3 + max(1.5, 2 + 0.1) = 2.4 ms into the cycle
        v = next(e for e in _spans(events, CONTROLLER_TID, "verify") if e["args"]["cycle"] == d["args"]["cycle"])
        cyc = next(c for c in _spans(events, CYCLE_TID) if c["name"] == f"cycle {d['args']['cycle']}")
        assert v["ts"] - cyc["ts"] == pytest.approx(2400.0)


def test_trace_has_one_named_track_per_rank(events):
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names[CONTROLLER_TID].startswith("rank 0")
    assert all(names[s].startswith(f"rank {s}: stage {s}") for s in range(1, N + 1))
    assert all(e["ts"] >= 0 and e.get("dur", 0) >= 0 for e in events if e["ph"] in ("X", "i"))
