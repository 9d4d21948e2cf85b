"""Constant latencies, i.i.d./replayed acceptance: the simulated cycle count is SPEC.md's exact K for the
realised accepts and rejects, the run time is K times the hand-computed cycle, and the fast recurrence and the
full dataflow model agree (to float rounding) for every method."""
from __future__ import annotations

import numpy as np
import pytest

from sim.des import simulate
from test_des_helpers import chain_rounds, refill_rejects, scenario

TOKENS = 1500
MODELS = ("fast", "dataflow")


def _sequence(seed: int, alpha: float, size: int) -> list[int]:
    return [int(x) for x in (np.random.default_rng(seed).random(size) < alpha)]


def _check_models_agree(a, b):
    assert a.cycles == b.cycles and a.rejects == b.rejects and a.refill_rejects == b.refill_rejects
    assert np.array_equal(a.records.outcome, b.records.outcome) and np.array_equal(a.records.in_flight, b.records.in_flight)
    assert np.allclose(a.records.end_ms, b.records.end_ms, rtol=0, atol=1e-9 * a.time_ms)
    for k in a.busy_fraction:
        assert b.busy_fraction[k] == pytest.approx(a.busy_fraction[k], rel=1e-9)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("method", ["spd", "ppsd"])
def test_pipeline_cycles_equal_exact_k(method, n):
    seq = _sequence(n, 0.7, TOKENS)  # one outcome per verification = per decoded token
    sc = scenario([{"method": method, "stages": n, "draft_layers": 1}], acceptance={"sequence": seq})
    f = 32 / n  # layers per stage x 1 ms
    # hand-computed cycle (SPEC.md 1.3): ctrl + max(PDM, stage + hop) + verify; PPSD: the draft is serial
    cycle = 0.8 + (max(1.0, f + 0.1) if method == "spd" else f + 0.1 + 1.0) + 0.4
    r_hand = refill_rejects(seq)
    k_hand = (TOKENS + 1) + n - 2 + (n - 1) * r_hand  # K = N + n - 2 + (n-1)R, N includes the prefill token
    runs = [simulate(sc, sc.methods[0], TOKENS, seed=1, model=m) for m in MODELS]
    for r in runs:
        assert r.cycles == k_hand
        assert r.refill_rejects == r_hand and r.rejects == seq.count(0)
        assert r.time_ms == pytest.approx(k_hand * cycle, rel=1e-12)
        assert r.accept_length == pytest.approx(n * (TOKENS + 1) / k_hand)
        assert int(r.records.committed.sum()) == TOKENS
    _check_models_agree(*runs)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_ar_pipeline_one_token_per_cycle(n):
    sc = scenario([{"method": "ar_pipeline", "stages": n}], stage_overhead=0.05)
    per_token = 0.8 + (32 + 0.05 * n) + n * 0.1 + 0.4  # ctrl + sum of stages + n hops + verify
    runs = [simulate(sc, sc.methods[0], 400, seed=0, model=m) for m in MODELS]
    for r in runs:
        assert r.cycles == 400
        assert r.time_ms == pytest.approx(400 * per_token, rel=1e-12)
    _check_models_agree(*runs)


@pytest.mark.parametrize("method,m", [("sd", 4), ("eagle3", 7), ("eagle3", 2)])
def test_chain_rounds_exact(method, m):
    bits = _sequence(m, 0.75, 997)
    spec = {"method": method, "gamma": m, "cost_ratio": 0.05} if method == "sd" else {"method": method, "steps": m, "draft_layers": 1}
    sc = scenario([spec], acceptance={"sequence": bits})
    rounds = chain_rounds(bits, m, TOKENS)
    rnd = 0.8 + (32 * (1 + m * 0.05) if method == "sd" else m * 1.0 + 32) + 0.4
    runs = [simulate(sc, sc.methods[0], TOKENS, seed=0, model=mo) for mo in MODELS]
    for r in runs:
        assert r.cycles == len(rounds)
        assert list(r.records.outcome) == rounds
        assert int(r.records.committed.sum()) == TOKENS
        assert r.time_ms == pytest.approx(len(rounds) * rnd, rel=1e-12)
        assert r.rejects == sum(1 for a in rounds if a < m)
    _check_models_agree(*runs)


def test_ar_is_the_denominator():
    sc = scenario([{"method": "ar"}])
    for mo in MODELS:
        r = simulate(sc, sc.methods[0], 250, seed=0, model=mo)
        assert r.cycles == 250 and r.time_ms == pytest.approx(250 * 32.0) and r.speedup == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["spd", "ppsd", "ar_pipeline", "sd", "eagle3"])
def test_models_agree_with_jitter_and_markov(method):
    """Random stage / draft / verify times and bursty acceptance: still the same numbers from both models
    (each latency stream is consumed in the same order)."""
    spec = {"spd": {"method": "spd", "stages": 4, "draft_layers": 4}, "ppsd": {"method": "ppsd", "stages": 4, "draft_layers": 1},
            "ar_pipeline": {"method": "ar_pipeline", "stages": 4}, "sd": {"method": "sd", "gamma": 3, "cost_ratio": 0.1},
            "eagle3": {"method": "eagle3", "steps": 5, "draft_layers": 1}}[method]
    sc = scenario([spec], acceptance={"markov": {"p_accept_after_accept": 0.85, "p_accept_after_reject": 0.5}},
                  layer={"dist": "lognormal", "mean": 1.0, "cv": 0.3}, verify={"dist": "empirical", "samples": [0.3, 0.5, 0.4]},
                  draft_layer={"dist": "lognormal", "mean": 2.0, "cv": 0.2}, ar_token={"dist": "lognormal", "mean": 32, "cv": 0.1})
    fast = simulate(sc, sc.methods[0], 800, seed=5, model="auto")
    assert fast.model == "fast"
    _check_models_agree(fast, simulate(sc, sc.methods[0], 800, seed=5, model="dataflow"))


def test_random_links_and_go_broadcast_still_agree():
    """Random hops everywhere force the dataflow model; a random GO broadcast alone keeps the recurrence exact."""
    from sim.des import CycleCosts, TimeSpec
    from sim.scenario import Latency

    jitter = {"dist": "lognormal", "mean": 0.1, "cv": 0.5}
    sc = scenario([{"method": "spd", "stages": 4, "draft_layers": 2}], hop=jitter)
    assert simulate(sc, sc.methods[0], 300, seed=1).model == "dataflow"
    sc = scenario([{"method": "spd", "stages": 4, "draft_layers": 2}])
    costs = CycleCosts(control=TimeSpec.const(0.8), verify=TimeSpec.const(0.4),
                       control_hop=TimeSpec.of(Latency("lognormal", 0.05, 0.5)))
    a = simulate(sc, sc.methods[0], 1500, seed=1, costs=costs)
    assert a.model == "fast"
    _check_models_agree(a, simulate(sc, sc.methods[0], 1500, seed=1, costs=costs, model="dataflow"))


@pytest.mark.parametrize("method", ["spd", "ppsd"])
def test_fill_cycles_cost_their_own_verify(method):
    """A cycle in which no token finishes (the pipeline filling after the prefill or a flush) costs
    ``verify_fill`` instead of ``verify``: the run is shorter by exactly (verify - verify_fill) per such cycle,
    in both models, and they still agree."""
    from sim.des import CycleCosts, TimeSpec

    n, seq = 4, _sequence(7, 0.6, TOKENS)
    sc = scenario([{"method": method, "stages": n, "draft_layers": 1}], acceptance={"sequence": seq})
    base = CycleCosts(control=TimeSpec.const(0.8), verify=TimeSpec.const(0.4))
    fill = CycleCosts(control=TimeSpec.const(0.8), verify=TimeSpec.const(0.4), verify_fill=TimeSpec.const(0.1))
    runs = {m: (simulate(sc, sc.methods[0], TOKENS, seed=1, costs=base, model=m),
                simulate(sc, sc.methods[0], TOKENS, seed=1, costs=fill, model=m)) for m in MODELS}
    for a, b in runs.values():
        fill_cycles = int((a.records.in_flight < n).sum())
        assert fill_cycles == (n - 1) * (1 + refill_rejects(seq))  # the first fill and every refill
        assert a.time_ms - b.time_ms == pytest.approx(0.3 * fill_cycles, rel=1e-9)
    _check_models_agree(runs["fast"][1], runs["dataflow"][1])
