"""Property and reference tests of sim.closed_form (formulas of SPEC.md sections 1-2)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import closed_form as cf
from sim.oracle import run_spd_cycles

alphas = st.floats(0.0, 1.0, allow_nan=False)
stages = st.integers(2, 64)


@given(stages)
def test_accept_length_limits(n):
    assert cf.spd_accept_length(0.0, n) == pytest.approx(1.0)
    assert cf.spd_accept_length(1.0, n) == pytest.approx(n)


@given(alphas, alphas, stages)
def test_accept_length_increases_with_alpha(a, b, n):
    lo, hi = sorted((a, b))
    if hi - lo > 1e-9:
        assert cf.spd_accept_length(hi, n) > cf.spd_accept_length(lo, n)


@given(alphas, stages)
def test_accept_length_inverse(a, n):
    assert cf.spd_alpha_from_accept_length(cf.spd_accept_length(a, n), n) == pytest.approx(a, abs=1e-9)


@given(st.floats(0.01, 1.0), stages, st.integers(3, 4096))
def test_finite_accept_length_inverse_and_limit(a, n, tokens):
    fin = cf.spd_accept_length_finite(a, n, tokens)
    assert cf.spd_alpha_from_accept_length_finite(fin, n, tokens) == pytest.approx(a, abs=1e-9)
    # Not always below the steady state: a final reject needs no refill, which can outweigh the
    # n-2 fill cycles in short generations. It converges to the steady state as N grows.
    assert cf.spd_accept_length_finite(a, n, 10**9) == pytest.approx(cf.spd_accept_length(a, n), rel=1e-6)


def test_finite_length_fill_cost_from_spec():
    # SPEC.md 1.1: about 1.4% at n=16, alpha=0.95, 512 tokens
    ratio = cf.spd_accept_length_finite(0.95, 16, 512) / cf.spd_accept_length(0.95, 16)
    assert 1 - ratio == pytest.approx(0.014, abs=0.001)


@settings(max_examples=300)
@given(st.integers(2, 16), st.integers(2, 200), st.lists(st.booleans(), min_size=200, max_size=200))
def test_exact_cycle_count_matches_oracle(n, tokens, decisions):
    run = run_spd_cycles(n, decisions, tokens)
    assert run.committed == tokens
    assert run.decisions_used == tokens - 1  # every commit after prefill is one verification
    assert run.cycles == cf.spd_cycles(tokens, n, run.refills)


def test_oracle_final_correction_adds_no_refill():
    # n=3, three tokens, the last verification rejects: K = N + n - 2 with R = 0
    run = run_spd_cycles(3, [True, False], 3)
    assert (run.rejects, run.refills, run.cycles) == (1, 0, 4)
    run = run_spd_cycles(3, [False, True], 3)  # a reject in the middle refills: K = 4 + 2
    assert (run.refills, run.cycles) == (1, 6)


def test_expected_cycles_match_oracle_monte_carlo():
    rng = np.random.default_rng(0)
    n, tokens, alpha = 6, 120, 0.7
    ks = [run_spd_cycles(n, rng.random(tokens) < alpha, tokens).cycles for _ in range(3000)]
    expected = cf.spd_expected_cycles(tokens, n, alpha)
    assert np.mean(ks) == pytest.approx(expected, abs=4 * np.std(ks) / np.sqrt(len(ks)))


@given(alphas, st.integers(0, 20))
def test_chain_sum_equals_leviathan_closed_form(a, g):
    assert cf.chain_expected_tokens(np.full(g, a)) == pytest.approx(cf.leviathan_expected_tokens(a, g), rel=1e-9)


@pytest.mark.parametrize("alpha,gamma", [(0.6, 3), (0.85, 5), (0.3, 8)])
def test_leviathan_matches_monte_carlo(alpha, gamma):
    rng = np.random.default_rng(1)
    accept = rng.random((200_000, gamma)) < alpha
    # tokens per round = accepted prefix length + 1 (bonus or correction token)
    tokens = np.cumprod(accept, axis=1).sum(axis=1) + 1
    se = tokens.std() / np.sqrt(tokens.size)
    assert tokens.mean() == pytest.approx(cf.leviathan_expected_tokens(alpha, gamma), abs=4 * se)


@given(st.floats(0.0, 1.0), st.integers(1, 20))
def test_alpha_from_chain_tokens_inverse(a, m):
    tau = cf.leviathan_expected_tokens(a, m)
    assert cf.leviathan_expected_tokens(cf.alpha_from_chain_tokens(tau, m), m) == pytest.approx(tau, rel=1e-9)


def test_published_check_numbers():
    # SPEC.md 2: EAGLE-3 m=15 tau 3.51 -> 2.39 ; PPSD n=16 L_acc 1.93 -> 1.29
    assert round(float(cf.eagle3_theoretical_speedup(3.51, 15, 1, 32)), 2) == 2.39
    a = cf.spd_alpha_from_accept_length(1.93, 16)
    assert round(float(cf.ppsd_theoretical_speedup(a, 16, 32, 2, 1)), 2) == 1.29


def test_sd_theoretical_speedup_formula():
    a, g, c = 0.8, 4, 0.05
    assert cf.sd_theoretical_speedup(cf.leviathan_expected_tokens(a, g), g, c) == pytest.approx((1 - a**5) / ((1 - a) * (g * c + 1)))


def test_uneven_split_pipeline_factor_and_hidden_draft():
    assert cf.balanced_largest_stage(36, 8) == 5
    assert cf.pipeline_factor(36, 5) == pytest.approx(7.2)
    # even split, PDM hidden: theoretical = L_acc
    assert cf.spd_theoretical_speedup(0.8, 8, 32, 4, 3) == pytest.approx(cf.spd_accept_length(0.8, 8))
    # PDM (6 layers) slower than a stage (4 layers): the cycle is the PDM's
    assert cf.spd_theoretical_speedup(0.8, 8, 32, 4, 6) == pytest.approx(cf.spd_tokens_per_cycle(0.8, 8) * 32 / 6)


def test_vectorised_shapes_broadcast():
    a = np.linspace(0, 1, 5)[:, None]
    n = np.array([2, 4, 8])[None, :]
    assert cf.spd_accept_length(a, n).shape == (5, 3)
    assert cf.leviathan_expected_tokens(a, n).shape == (5, 3)
    assert cf.alpha_from_chain_tokens(np.array([1.0, 2.0, 9.0]), 7).tolist()[::2] == [0.0, 1.0]


def test_wallclock_kernels_by_hand():
    # SPD: 0.8 + max(3*1.0, 4*1.0 + 0.1) + 0.43
    assert cf.spd_cycle_ms(4.0, 0.1, 3.0, 0.43, 0.8) == pytest.approx(5.33)
    assert cf.spd_cycle_ms(4.0, 0.1, 6.0, 0.43, 0.8) == pytest.approx(7.23)  # PDM exposed
    assert cf.ppsd_cycle_ms(4.0, 0.1, 1.0, 0.43, 0.8) == pytest.approx(6.33)
    assert cf.ar_pipeline_token_ms(32.0, 4, 0.1, 0.43, 0.8) == pytest.approx(33.63)
    assert cf.eagle3_round_ms(7, 1, 1.0, 32.0, 0.43, 0.8) == pytest.approx(40.23)
    assert cf.sd_round_ms(4, 0.05, 32.0, 0.43, 0.8) == pytest.approx(39.63)
    wc = cf.WallClock(np.float64(5.33), np.float64(0.5), 32.0)
    assert wc.tokens_per_s == pytest.approx(1000 * 0.5 / 5.33)
    assert wc.wallclock_speedup == pytest.approx(0.5 * 32 / 5.33)
