"""Statistical agreement with the closed form (sim.closed_form via the method registry): with constant
latencies and i.i.d. acceptance the simulated L_acc / tokens per round and the wall-clock speedup lie within
four standard errors of `spd predict`. Four standard errors keep the test from failing by chance; a modelling
error of the size these tests target (a wrong refill length, a draft counted serially) is many times larger.
The benchmark-grade check (0.5% at 1,000,000 tokens) is benchmarks/simulate_throughput.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.des import simulate
from sim.methods import get_method
from test_des_helpers import scenario

ALPHA = 0.8


def _predict(sc):
    spec = sc.methods[0]
    return get_method(spec.method).predict(spec, sc)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("method", ["spd", "ppsd"])
def test_pipeline_matches_closed_form(method, n):
    tokens = 60_000
    sc = scenario([{"method": method, "stages": n, "draft_layers": 2}], acceptance={"alpha": ALPHA})
    r = simulate(sc, sc.methods[0], tokens, seed=11)
    assert r.model == "fast"
    p = _predict(sc)
    # K = T + n - 1 + (n-1)R with R ~ Binomial(T, 1-alpha): relative standard error of T/K
    rel_se = (n - 1) * math.sqrt(tokens * ALPHA * (1 - ALPHA)) / (tokens * (1 + (n - 1) * (1 - ALPHA)))
    assert abs(r.accept_length / p.accept_length - 1) < 4 * rel_se
    assert abs(r.speedup / p.wallclock_speedup - 1) < 4 * rel_se


def test_dataflow_model_matches_closed_form():
    n, tokens = 8, 6000
    sc = scenario([{"method": "spd", "stages": n, "draft_layers": 3}], acceptance={"alpha": ALPHA})
    r = simulate(sc, sc.methods[0], tokens, seed=3, model="dataflow")
    p = _predict(sc)
    rel_se = (n - 1) * math.sqrt(tokens * ALPHA * (1 - ALPHA)) / (tokens * (1 + (n - 1) * (1 - ALPHA)))
    assert abs(r.speedup / p.wallclock_speedup - 1) < 4 * rel_se


def _chain_rel_se(probs, rounds):
    """Relative standard error of the mean tokens per round, from the exact round distribution."""
    m = len(probs)
    surv = np.concatenate([[1.0], np.cumprod(probs)])  # P(first k drafts accepted)
    pk = np.array([surv[k] * (1 - probs[k]) for k in range(m)] + [surv[m]])  # P(a = k)
    tok = np.arange(m + 1) + 1.0
    mean = (pk * tok).sum()
    sd = math.sqrt((pk * (tok - mean) ** 2).sum())
    return sd / (mean * math.sqrt(rounds))


@pytest.mark.parametrize("spec,acc", [
    ({"method": "sd", "gamma": 4, "cost_ratio": 0.05}, {"alpha": 0.7}),
    ({"method": "eagle3", "steps": 7, "draft_layers": 1}, {"per_position": [0.76, 0.73, 0.70, 0.68, 0.66, 0.63, 0.61]}),
    ({"method": "eagle3", "steps": 3, "draft_layers": 1}, {"alpha": 0.9}),
])
def test_chain_methods_match_closed_form(spec, acc):
    tokens = 40_000
    sc = scenario([spec], acceptance=acc)
    r = simulate(sc, sc.methods[0], tokens, seed=2)
    p = _predict(sc)
    m = spec.get("gamma") or spec["steps"]
    probs = np.array(acc.get("per_position") or [acc["alpha"]] * m)
    rel_se = _chain_rel_se(probs, r.cycles)
    assert abs(r.accept_length / p.accept_length - 1) < 4 * rel_se
    assert abs(r.speedup / p.wallclock_speedup - 1) < 4 * rel_se


@pytest.mark.parametrize("spec", [{"method": "ar"}, {"method": "ar_pipeline", "stages": 4}, {"method": "ar_pipeline", "stages": 3}])
def test_deterministic_methods_equal_closed_form(spec):
    sc = scenario([spec], stage_overhead=0.05)
    r = simulate(sc, sc.methods[0], 500, seed=0)
    assert r.speedup == pytest.approx(_predict(sc).wallclock_speedup, rel=1e-9)


def test_uneven_split_larger_stages_first():
    """32 layers over 3 stages = 11/11/10: the largest stage runs from the first cycle on, so even the
    fill cycles take the closed form's cycle (ctrl + max(PDM, 11 + hop) + verify) and K x cycle is exact."""
    seq = [1, 1, 0, 1] * 50
    sc = scenario([{"method": "spd", "stages": 3, "draft_layers": 2}], acceptance={"sequence": seq})
    r = simulate(sc, sc.methods[0], len(seq), seed=0, model="dataflow")
    assert r.time_ms == pytest.approx(r.cycles * (0.8 + 11.1 + 0.4), rel=1e-12)
    assert r.mean_cycle_ms == pytest.approx(_predict(sc).cycle_ms, rel=1e-12)
