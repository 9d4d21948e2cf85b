"""Effects the closed form misses, each against a hand-computed expectation."""
from __future__ import annotations

import math

import pytest

from sim.des import simulate
from sim.errors import InputError
from sim.methods import get_method
from test_des_helpers import scenario

ALL_ACCEPT = {"sequence": [1]}  # every draft accepted: the pipeline stays full after the fill


def test_stage_jitter_lowers_throughput():
    """4 stages whose forward is 1 or 3 ms with equal odds (mean 2). The cycle waits for the slowest
    stage that runs, E[max of l two-point draws] = 3 - 2/2^l, so the mean steady cycle is
    ctrl 0.3 + (2.875 + hop 0.1) + verify 0.2 = 3.475 ms instead of the 2.6 ms constant stages give."""
    two_point = {"dist": "empirical", "samples": [1.0, 3.0]}
    tokens = 4000
    spec = {"method": "spd", "stages": 4, "draft_layers": 1, "stage_forward_ms": [two_point] * 4}
    sc = scenario([spec], acceptance=ALL_ACCEPT, layers=8, hop=0.1, draft_layer=0.5, verify=0.2, cycle_overhead=0.3)
    r = simulate(sc, sc.methods[0], tokens, seed=7)
    emax = lambda l: 3 - 2 / 2**l  # noqa: E731
    # K = T + 3: fill cycles with 1, 2, 3 stages, then T full cycles
    expected = sum(0.6 + emax(l) for l in (1, 2, 3)) + tokens * (0.6 + emax(4))
    sd = math.sqrt(sum(4 * 2**-l * (1 - 2**-l) for l in (1, 2, 3)) + tokens * 4 * 2**-4 * (1 - 2**-4))
    assert r.cycles == tokens + 3
    assert abs(r.time_ms - expected) < 4 * sd
    const = scenario([{**spec, "stage_forward_ms": [2.0] * 4}], acceptance=ALL_ACCEPT, layers=8, hop=0.1,
                     draft_layer=0.5, verify=0.2, cycle_overhead=0.3)
    rc = simulate(const, const.methods[0], tokens, seed=7)
    assert rc.time_ms == pytest.approx((tokens + 3) * 2.6)
    assert r.tokens_per_s < 0.8 * rc.tokens_per_s  # 2.6 / 3.475 = 0.75
    # the closed form only sees the mean stage time
    assert get_method("spd").predict(sc.methods[0], sc).cycle_ms == pytest.approx(2.6)


def test_two_stages_sharing_a_device_queue():
    """n=2, both stages on device 1 (4 ms each). Fill cycle: 0.3 + max(0.5, 4 + 0.1) + 0.2 = 4.6 ms.
    Full cycles: the two forwards queue on the device (8 ms), the later one reports 0.1 ms after:
    0.3 + 8.1 + 0.2 = 8.6 ms. The stage-1 -> stage-2 transfer stays on the device (no hop)."""
    spec = {"method": "spd", "stages": 2, "draft_layers": 1, "placement": {"controller": 0, "stages": [1, 1]}}
    sc = scenario([spec], acceptance=ALL_ACCEPT, layers=8, hop=0.1, draft_layer=0.5, verify=0.2, cycle_overhead=0.3)
    tokens = 300
    r = simulate(sc, sc.methods[0], tokens, seed=0)
    assert r.model == "dataflow" and "device(s) [1]" in r.model_reason
    assert r.cycles == tokens + 1
    assert r.time_ms == pytest.approx(4.6 + tokens * 8.6, rel=1e-12)
    assert r.busy_fraction["device 1"] == pytest.approx((4 + tokens * 8) / r.time_ms)
    apart = scenario([{**spec, "placement": None}], acceptance=ALL_ACCEPT, layers=8, hop=0.1, draft_layer=0.5,
                     verify=0.2, cycle_overhead=0.3)
    assert simulate(apart, apart.methods[0], tokens).time_ms == pytest.approx((tokens + 1) * 4.6)
    with pytest.raises(InputError, match="not exact"):
        simulate(sc, sc.methods[0], tokens, model="fast")


def test_stage_sharing_the_controller_device_delays_the_draft():
    """n=2, stage 1 on the controller's device 0: the PDM (3 ms) and stage 1 (4 ms) queue there. GO wakes the
    stages before the draft is issued, so stage 1 runs first (0..4) and the draft after it (4..7); stage 2 (device 1)
    reports at 4.1. Full cycle: 0.3 + 7 + 0.2 = 7.5 ms instead of 0.3 + 4.1 + 0.2 = 4.6."""
    spec = {"method": "spd", "stages": 2, "draft_layers": 3, "placement": {"controller": 0, "stages": [0, 1]}}
    sc = scenario([spec], acceptance=ALL_ACCEPT, layers=8, hop=0.1, draft_layer=1.0, verify=0.2, cycle_overhead=0.3)
    r = simulate(sc, sc.methods[0], 100, seed=0)
    assert r.cycles == 101
    assert r.records.duration_ms[1:].tolist() == pytest.approx([7.5] * 100)


def test_inter_node_hop():
    """n=8 with 8 devices per node: ranks 0..7 on node 0, stage 8 (device 8) on node 1. Its hops (7 -> 8 and
    8 -> rank 0) cost 0.5 ms instead of 0.03. Fill cycles without stage 8: 0.8 + max(3, 4 + 0.03) + 0.4 = 5.23 ms;
    cycles with it: 0.8 + max(3, 4 + 0.5) + 0.4 = 5.7 ms (the closed form with the intra-node hop says 5.23)."""
    topo = {"devices_per_node": 8, "hop_intra_node": 0.03, "hop_inter_node": 0.5}
    sc = scenario([{"method": "spd", "stages": 8, "draft_layers": 3}], acceptance=ALL_ACCEPT, topology=topo, hop=0.03)
    tokens = 500
    r = simulate(sc, sc.methods[0], tokens, seed=0)
    assert r.model == "dataflow" and "slower than" in r.model_reason
    assert r.cycles == tokens + 7
    assert r.time_ms == pytest.approx(7 * 5.23 + tokens * 5.7, rel=1e-12)
    assert get_method("spd").predict(sc.methods[0], sc).cycle_ms == pytest.approx(5.23)
    # everything on one node: back to the closed form's cycle
    one_node = scenario([{"method": "spd", "stages": 8, "draft_layers": 3}], acceptance=ALL_ACCEPT,
                        topology={**topo, "devices_per_node": 9}, hop=0.03)
    assert simulate(one_node, one_node.methods[0], tokens).time_ms == pytest.approx((tokens + 7) * 5.23, rel=1e-12)


def test_draft_slower_than_a_stage_is_exposed():
    """n=8, L=32: a stage is 4 layers = 4 ms, + hop 0.1 = 4.1 ms. draft_layer 1.3 ms: a 3-layer PDM (3.9 ms)
    hides behind the stages (slack 0.2 ms); the 4th layer adds 1.3 ms > slack, so the 4-layer PDM (5.2 ms) is on the
    critical path: cycles of 0.8 + 4.1 + 0.4 = 5.3 ms vs 0.8 + 5.2 + 0.4 = 6.4 ms. Same accepts, so the 4-layer
    draft is slower by exactly 5.3/6.4 even though it is not less accurate."""
    seq = [1, 1, 1, 0, 1, 1, 1, 1, 1, 0]
    runs = {}
    for ls in (3, 4):
        sc = scenario([{"method": "spd", "stages": 8, "draft_layers": ls}], acceptance={"sequence": seq}, draft_layer=1.3)
        runs[ls] = simulate(sc, sc.methods[0], 1000, seed=0, model="dataflow")
    assert runs[3].cycles == runs[4].cycles
    assert runs[3].mean_cycle_ms == pytest.approx(5.3) and runs[4].mean_cycle_ms == pytest.approx(6.4)
    assert runs[4].tokens_per_s / runs[3].tokens_per_s == pytest.approx(5.3 / 6.4)
    # the controller's device computes the draft 5.2 of every 6.4 ms
    assert runs[4].busy_fraction["device 0"] == pytest.approx((5.2 + 0.4) / 6.4)


def test_message_size_over_bandwidth_adds_to_the_hop():
    """A 1024-wide bf16 hidden state is 2048 bytes; at 0.001 GB/s it takes 2.048 ms on top of the 0.1 ms hop.
    n=2, 4-ms stages, alpha 1: cycles 0.3 + (4 + 2.148) + 0.2 = 6.648 ms."""
    sc = scenario([{"method": "spd", "stages": 2, "draft_layers": 1}], acceptance=ALL_ACCEPT, layers=8, hop=0.1,
                  draft_layer=0.5, verify=0.2, cycle_overhead=0.3, topology={"bandwidth_gbps": 0.001}, hidden_size=1024)
    r = simulate(sc, sc.methods[0], 50, seed=0)
    assert r.time_ms == pytest.approx(51 * 6.648, rel=1e-12)
