"""Verification (reference/verify.py): greedy rule, and speculative rejection sampling reproduces p exactly.

The statistical tests are seeded (deterministic) and use a p-value threshold far from any plausible
fluctuation (1e-4); the "can fail" tests show the same harness rejects a deliberately wrong residual.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import reference.verify as verify
from reference.verify import (SamplingConfig, Verifier, draft_distribution, residual_distribution, sample_token,
                              speculative_verify, target_probs)
from sim.errors import InputError


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread for tiny tensors


P = torch.tensor([0.30, 0.05, 0.20, 0.02, 0.13, 0.10, 0.15, 0.05], dtype=torch.float64)
Q_FULL = torch.tensor([0.05, 0.30, 0.10, 0.15, 0.05, 0.20, 0.05, 0.10], dtype=torch.float64)
# A reduced draft vocabulary {1, 2, 4, 6}: q is zero outside it (tokens 0, 3, 5, 7 only come from residuals).
Q_REDUCED = torch.tensor([0.0, 0.40, 0.10, 0.0, 0.30, 0.0, 0.20, 0.0], dtype=torch.float64)
DRAWS = 6000


def _output_counts(p: torch.Tensor, q: torch.Tensor, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    counts = np.zeros(p.numel())
    for _ in range(DRAWS):
        x = sample_token(q, gen)
        counts[speculative_verify(p, q, x, gen).token] += 1
    return counts


@pytest.mark.parametrize("q", [Q_FULL, Q_REDUCED], ids=["full-vocab-q", "reduced-vocab-q"])
def test_rejection_sampling_output_is_distributed_as_p(q):
    counts = _output_counts(P, q, seed=11)
    assert chisquare(counts, P.numpy() * DRAWS).pvalue > 1e-4


def test_chi_square_harness_catches_a_wrong_residual(monkeypatch):
    # Classic bug: resample the correction from p instead of normalize(max(0, p - q)).
    monkeypatch.setattr(verify, "residual_distribution", lambda p, q: p)
    counts = _output_counts(P, Q_FULL, seed=11)
    assert chisquare(counts, P.numpy() * DRAWS).pvalue < 1e-6


def test_chi_square_harness_catches_an_inverted_accept_ratio(monkeypatch):
    real = verify.speculative_verify

    def inverted(p, q, x, gen):  # accept with min(1, q/p): wrong
        return real(q, p, x, gen) if float(p[x]) > 0 else real(p, q, x, gen)

    gen = torch.Generator().manual_seed(3)
    counts = np.zeros(P.numel())
    for _ in range(DRAWS):
        x = sample_token(Q_FULL, gen)
        counts[inverted(P, Q_FULL, x, gen).token] += 1
    assert chisquare(counts, P.numpy() * DRAWS).pvalue < 1e-6


def test_acceptance_probability_is_sum_of_min_p_q():
    gen = torch.Generator().manual_seed(5)
    accepted = 0
    for _ in range(DRAWS):
        x = sample_token(Q_FULL, gen)
        accepted += speculative_verify(P, Q_FULL, x, gen).accepted
    expected = float(torch.minimum(P, Q_FULL).sum())
    sd = (expected * (1 - expected) / DRAWS) ** 0.5
    assert abs(accepted / DRAWS - expected) < 5 * sd


def test_residual_is_normalised_positive_part():
    r = residual_distribution(P, Q_FULL)
    want = torch.clamp(P - Q_FULL, min=0)
    assert torch.allclose(r, want / want.sum())
    assert torch.equal(residual_distribution(P, P), P)  # empty residual (rounding only): falls back to p


def test_identical_p_and_q_always_accept():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        x = sample_token(P, gen)
        assert speculative_verify(P, P, x, gen).accepted


def test_greedy_accepts_iff_argmax():
    v = Verifier(SamplingConfig(0.0))
    logits = torch.tensor([0.1, 2.0, -1.0, 1.9])
    assert v.verify(logits, 1, None).accepted and v.verify(logits, 1, None).token == 1
    res = v.verify(logits, 3, None)
    assert not res.accepted and res.token == 1


def test_temperature_and_reduced_vocab_distribution():
    logits = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(target_probs(logits, 0.5), torch.softmax(logits.double() / 0.5, -1))
    q = draft_distribution(torch.tensor([0.0, 1.0]), torch.tensor([4, 1]), 6, 1.0)
    assert q[2] == 0 and q[0] == 0 and torch.isclose(q.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert q[1] > q[4]
    assert draft_distribution(torch.tensor([0.0, 1.0]), None, 2, 0.0) is None


def test_same_seed_same_tokens_and_reset():
    v = Verifier(SamplingConfig(1.0, seed=9))
    logits = torch.randn(50, generator=torch.Generator().manual_seed(1))
    a = [v.first_token(logits) for _ in range(20)]
    v.reset()
    assert [v.first_token(logits) for _ in range(20)] == a


def test_bad_temperature_is_input_error():
    with pytest.raises(InputError):
        SamplingConfig(temperature=-0.5)


def test_draft_token_outside_q_is_an_error():
    with pytest.raises(ValueError):
        speculative_verify(P, Q_REDUCED, 0, torch.Generator())
