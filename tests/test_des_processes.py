"""The execution-time model (latency streams) and the acceptance processes on their own."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sim.des import simulate
from sim.des.acceptance import AcceptanceSource, ChainSource
from sim.des.latency import Stream, Term, TimeSpec
from sim.scenario import Acceptance, Latency, MarkovAcceptance
from test_des_helpers import scenario


def test_lognormal_has_the_given_mean_and_cv():
    s = Stream("x", TimeSpec((Term(Latency("lognormal", 2.0, 0.3)),)), seed=1)
    x = s.take(200_000)
    assert abs(x.mean() - 2.0) < 4 * 0.6 / math.sqrt(len(x))
    assert x.std() / x.mean() == pytest.approx(0.3, rel=0.02)


def test_empirical_resamples_the_measurements_and_scales():
    samples = (1.0, 2.0, 7.0)
    x = Stream("e", TimeSpec((Term(Latency("empirical", 10 / 3, 0.0, samples), 2.0),)), seed=0).take(30_000)
    assert set(np.unique(x)) == {2.0, 4.0, 14.0}
    assert abs(x.mean() - 20 / 3) < 4 * np.std([2, 4, 14]) / math.sqrt(len(x))


def test_next_and_take_give_the_same_sequence():
    spec = TimeSpec((Term(Latency("lognormal", 1.0, 0.5)), Term(Latency.constant(0.25))))
    a = Stream("s", spec, 9)
    b = Stream("s", spec, 9)
    one = [a.next() for _ in range(10_000)]
    many = np.concatenate([b.take(3), b.take(5000), b.take(4997)])
    assert one == many.tolist()
    assert Stream("other", spec, 9).take(5).tolist() != one[:5]  # streams are independent


def test_markov_acceptance_is_bursty_with_the_right_rates():
    p_aa, p_ar = 0.9, 0.3
    src = AcceptanceSource(Acceptance(0.75, "markov", markov=MarkovAcceptance(p_aa, p_ar)), seed=4)
    x = src.outcomes(200_000)
    stationary = p_ar / (1 - p_aa + p_ar)  # 0.75
    assert x.mean() == pytest.approx(stationary, abs=0.01)
    after_accept = x[1:][x[:-1] == 1]
    after_reject = x[1:][x[:-1] == 0]
    assert after_accept.mean() == pytest.approx(p_aa, abs=4 * math.sqrt(p_aa * (1 - p_aa) / len(after_accept)))
    assert after_reject.mean() == pytest.approx(p_ar, abs=4 * math.sqrt(p_ar * (1 - p_ar) / len(after_reject)))


def test_replayed_sequence_is_cycled_and_the_result_says_so():
    seq = [1, 1, 1, 0, 1]
    sc = scenario([{"method": "spd", "stages": 4, "draft_layers": 1}], acceptance={"sequence": seq})
    r = simulate(sc, sc.methods[0], 23, seed=0)
    verified = r.records.outcome[r.records.outcome >= 0].tolist()
    assert verified == (seq * 5)[:23]
    assert any("replayed 5 times" in n for n in r.notes)
    assert not simulate(sc, sc.methods[0], 5, seed=0).notes


def test_per_position_chain_distribution():
    probs = (0.9, 0.6, 0.3)
    src = ChainSource(Acceptance(0.6, "per_position", per_position=probs), m=4, seed=2)  # position 4 keeps 0.3
    a = src.rounds(100_000)
    p = [0.1, 0.9 * 0.4, 0.9 * 0.6 * 0.7, 0.9 * 0.6 * 0.3 * 0.7, 0.9 * 0.6 * 0.3 * 0.3]
    counts = np.bincount(a, minlength=5) / len(a)
    for k in range(5):
        assert abs(counts[k] - p[k]) < 4 * math.sqrt(p[k] * (1 - p[k]) / len(a))


def test_one_token_drafters_use_the_first_position():
    """SPD's single draft is accepted at the first chain position's rate, as in the closed form."""
    src = AcceptanceSource(Acceptance(0.5, "per_position", per_position=(0.9, 0.1)), seed=0)
    assert src.outcomes(50_000).mean() == pytest.approx(0.9, abs=0.01)
