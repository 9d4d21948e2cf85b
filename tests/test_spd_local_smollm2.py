"""SPD on the real default model (SmolLM2-135M-Instruct, fp32 CPU): token for token equal to AR greedy on chat
prompts, with the untrained PDM (every draft rejected: the flush path) and the replay draft (long accept runs).
"""
from __future__ import annotations

import pytest

from reference.draft import PDMConfig, PipelineDraftModule, ReplayDraft
from reference.local_engine import LocalEngine
from reference.model import generate_greedy
from sim.closed_form import spd_cycles

PROMPTS = ["Write a short story about a robot who learns to paint.", "Explain why the sky is blue."]
NEW = 40

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases(smollm2):
    model, tok = smollm2
    eos = model.config.eos_token_ids
    out = []
    for text in PROMPTS:
        ids = tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]))
        out.append((ids, generate_greedy(model, ids, NEW, eos)))
    return out


@pytest.mark.parametrize("k", range(len(PROMPTS)))
def test_spd_equals_ar_greedy_on_smollm2(smollm2, cases, k):
    model, _ = smollm2
    eos = model.config.eos_token_ids
    ids, ref = cases[k]
    assert len(ref) >= 8
    for n in (2, 3):
        pdm = PipelineDraftModule(model, PDMConfig.default(model.config, n), seed=k)
        # untrained PDM on the first prompt (flush path); replay at alpha 0.7 on the second (accept runs)
        draft = pdm if k == 0 else ReplayDraft(0.7, lambda _ids, ref=ref: ref, model.config.vocab_size, seed=n,
                                               inner=pdm)
        eng = LocalEngine(model, n)
        r = eng.generate_spd(ids, draft, NEW, eos).result
        assert r.tokens == ref, (n, k)
        assert r.cycles == spd_cycles(len(r.tokens), n, r.refill_rejects)
        # the cheap greedy emulation (one whole-sequence forward) reproduces the accept sequence on a real model
        emu = eng.emulate_spd_greedy(ids, ref, draft, eos).result
        assert (emu.accepts, emu.cycles) == (r.accepts, r.cycles)
