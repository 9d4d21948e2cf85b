"""End to end at temperature > 0: SPD with an untrained, reduced-vocabulary PDM samples exactly the target's
distribution over whole continuations (chi-square against the enumerated joint distribution of 3 tokens on a
6-token vocabulary). Seeded, so deterministic; the threshold (p > 1e-4) is far from a plausible fluctuation,
and the same harness rejects SPD run with a wrong residual."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import reference.verify as verify
from reference.draft import PDMConfig, PipelineDraftModule
from reference.loaders import random_model
from reference.local_engine import LocalEngine
from reference.model import ModelConfig
from reference.verify import SamplingConfig
from sim.closed_form import spd_cycles


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread for tiny tensors


CFG = ModelConfig(name="tiny-vocab", vocab_size=6, hidden_size=32, intermediate_size=64, num_layers=4,
                  num_heads=2, num_kv_heads=1, head_dim=16, max_seq_len=16)
PROMPT, NEW, T, RUNS = [1, 4], 3, 1.0, 1000


@pytest.fixture(scope="module")
def setup():
    model = random_model(CFG, torch.device("cpu"), torch.float32, seed=7)
    with torch.no_grad():
        model.output.weight.mul_(8.0)  # peaked target distributions (random init is nearly uniform)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, 2, draft_vocab_size=4, tie_head=False),
                              vocab_ids=torch.tensor([0, 2, 3, 5]), seed=1)
    with torch.no_grad():
        pdm.head.weight.mul_(8.0)  # a confident draft that disagrees with the target: many rejects
    return model, pdm


def _exact_joint(model) -> dict[tuple[int, ...], float]:
    """P(x1, x2, x3 | prompt) at temperature T, by enumerating every prefix with full forwards."""
    def probs(prefix):
        with torch.no_grad():
            logits = model(torch.tensor([prefix]), torch.arange(len(prefix)), model.new_cache(1))[0, -1]
        return torch.softmax(logits.double() / T, -1)
    out = {}
    for seq in itertools.product(range(CFG.vocab_size), repeat=NEW):
        p = 1.0
        for k in range(NEW):
            p *= float(probs(PROMPT + list(seq[:k]))[seq[k]])
        out[seq] = p
    return out


def _pvalue(samples: list[tuple[int, ...]], exact: dict[tuple[int, ...], float]) -> float:
    """Chi-square over continuation cells; cells expected < 5 times are pooled into one."""
    counts = {s: 0 for s in exact}
    for s in samples:
        counts[s] += 1
    obs, exp, pool_o, pool_e = [], [], 0.0, 0.0
    for s, p in exact.items():
        if p * len(samples) >= 5:
            obs.append(counts[s])
            exp.append(p * len(samples))
        else:
            pool_o, pool_e = pool_o + counts[s], pool_e + p * len(samples)
    obs.append(pool_o)
    exp.append(pool_e)
    return float(chisquare(np.array(obs), np.array(exp) * (sum(obs) / sum(exp))).pvalue)


def _spd_samples(model, pdm) -> tuple[list[tuple[int, ...]], float]:
    eng = LocalEngine(model, 2)
    samples, rejects, drafts = [], 0, 0
    for seed in range(RUNS):
        r = eng.generate_spd(PROMPT, pdm, NEW, sampling=SamplingConfig(T, seed)).result
        samples.append(tuple(r.tokens))
        rejects, drafts = rejects + r.rejects, drafts + len(r.accepts)
        assert r.cycles == spd_cycles(len(r.tokens), 2, r.refill_rejects)
    return samples, rejects / drafts


def test_spd_sampling_preserves_the_target_distribution(setup):
    model, pdm = setup
    exact = _exact_joint(model)
    samples, reject_rate = _spd_samples(model, pdm)
    assert 0.3 < reject_rate < 0.9  # both branches of the rejection sampler are exercised
    assert _pvalue(samples, exact) > 1e-4


def test_the_harness_catches_spd_with_a_wrong_residual(setup, monkeypatch):
    model, pdm = setup
    monkeypatch.setattr(verify, "residual_distribution", lambda p, q: p)
    samples, _ = _spd_samples(model, pdm)
    assert _pvalue(samples, _exact_joint(model)) < 1e-6
