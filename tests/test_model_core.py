"""reference.model on tiny random configs: stages, cache crop, batching, one-token steps, hidden collection."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from reference.model import (KVCache, ModelConfig, OneTokenStep, StageModel, Transformer, generate_greedy,
                             init_random_)

TINY = ModelConfig(name="tiny", vocab_size=97, hidden_size=48, intermediate_size=96, num_layers=6, num_heads=6,
                   num_kv_heads=2, head_dim=8, rope_theta=10000.0, max_seq_len=64)


def make(config: ModelConfig = TINY, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    # std 0.2: logits far from ties, so argmax comparisons are meaningful
    return init_random_(Transformer(config), seed, std=0.2).eval()


def tokens(n: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY.vocab_size, (batch, n), generator=g)


@torch.no_grad()
def full_logits(model: Transformer, toks: torch.Tensor) -> torch.Tensor:
    return model(toks, torch.arange(toks.shape[1]), model.new_cache(toks.shape[0]))


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("splits", [(3,), (1, 4), (1, 2, 3, 4, 5)])
@torch.no_grad()
def test_stage_composition_equals_full_model(splits, qk_norm):
    model = make(dataclasses.replace(TINY, qk_norm=qk_norm))
    toks = tokens(10)
    ref = full_logits(model, toks)
    bounds = (0, *splits, TINY.num_layers)
    stages = [model.stage(a, b) for a, b in zip(bounds, bounds[1:])]
    caches = [s.new_cache(1) for s in stages]
    h = model.embed(toks)
    for s, c in zip(stages, caches):
        h, _ = s(h, torch.arange(10), c)
    assert torch.equal(model.final_logits(h), ref)
    # then one-token decode steps through the stages equal the full model's one-token steps
    full_cache = model.new_cache(1)
    model(toks, torch.arange(10), full_cache)
    for pos, t in zip(range(10, 14), [5, 7, 11, 13]):
        x = torch.tensor([[t]])
        want = model(x, torch.tensor([pos]), full_cache)
        h = model.embed(x)
        for s, c in zip(stages, caches):
            h, _ = s(h, torch.tensor([pos]), c)
        assert torch.equal(model.final_logits(h), want)


@torch.no_grad()
def test_decode_steps_match_prefill():
    model = make()
    toks = tokens(12)
    ref = full_logits(model, toks)
    cache = model.new_cache(1)
    model(toks[:, :4], torch.arange(4), cache)
    step_logits = [model(toks[:, i:i + 1], torch.tensor([i]), cache) for i in range(4, 12)]
    torch.testing.assert_close(torch.cat(step_logits, 1), ref[:, 4:], rtol=1e-4, atol=1e-4)
    assert cache.length == 12


@torch.no_grad()
def test_crop_then_redecode_equals_fresh_decode():
    model = make()
    toks = tokens(8)
    cont = tokens(4, seed=2)
    fresh = model.new_cache(1)
    model(toks, torch.arange(8), fresh)
    want = [model(cont[:, i:i + 1], torch.tensor([8 + i]), fresh) for i in range(4)]

    cache = model.new_cache(1)
    model(toks, torch.arange(8), cache)
    wrong = tokens(5, seed=3)  # a rejected speculative branch written into slots 8..12
    for i in range(5):
        model(wrong[:, i:i + 1], torch.tensor([8 + i]), cache)
    assert cache.length == 13
    cache.crop(8)
    assert cache.length == 8
    got = [model(cont[:, i:i + 1], torch.tensor([8 + i]), cache) for i in range(4)]
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        cache.crop(TINY.max_seq_len + 1)


@torch.no_grad()
def test_batch_equals_per_sample():
    model = make()
    toks = tokens(9, batch=3)
    batched = full_logits(model, toks)
    for b in range(3):
        single = full_logits(model, toks[b:b + 1])
        torch.testing.assert_close(batched[b:b + 1], single, rtol=1e-5, atol=1e-5)
        assert torch.equal(batched[b].argmax(-1), single[0].argmax(-1))


@torch.no_grad()
def test_right_padded_batch_with_per_row_positions():
    """Rows of different lengths: pad slots are overwritten by the next decode step before being attended."""
    model = make()
    a, b = tokens(7, seed=4)[0], tokens(4, seed=5)[0]
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0], batch[1, :4] = a, b
    pos = torch.arange(7).expand(2, 7).contiguous()
    cache = model.new_cache(2)
    logits = model(batch, pos, cache)
    torch.testing.assert_close(logits[1, :4], full_logits(model, b[None])[0], rtol=1e-5, atol=1e-5)
    # next step: row 0 at position 7, row 1 at position 4 (over its first pad slot)
    nxt = torch.tensor([[3], [9]])
    step = model(nxt, torch.tensor([[7], [4]]), cache)
    torch.testing.assert_close(step[0], full_logits(model, torch.cat([a, nxt[0]])[None])[0, -1:], rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(step[1], full_logits(model, torch.cat([b, nxt[1]])[None])[0, -1:], rtol=1e-5,
                               atol=1e-5)


@torch.no_grad()
def test_collect_hidden_indices_follow_spec_numbering():
    model = make()
    toks = tokens(5)
    L = TINY.num_layers
    _, all_hidden = model.stage(0, L)(model.embed(toks), torch.arange(5), model.new_cache(1),
                                      collect=range(L + 1))
    assert sorted(all_hidden) == list(range(L + 1))
    assert torch.equal(all_hidden[0], model.embed(toks))  # index 0 = embedding output
    assert torch.equal(model.final_logits(all_hidden[L]), full_logits(model, toks))
    # the stage [2, 4) sees index 2 as its input and produces 3 and 4
    s1, s2 = model.stage(0, 2), model.stage(2, L)
    h, got1 = s1(model.embed(toks), torch.arange(5), s1.new_cache(1), collect=(0, 2))
    _, got2 = s2(h, torch.arange(5), s2.new_cache(1), collect=(2, 3, 4))
    for i, t in {**got1, **got2}.items():
        assert torch.equal(t, all_hidden[i]), i
    with pytest.raises(ValueError):
        s2(h, torch.arange(5), s2.new_cache(1), collect=(1,))


def test_bad_stage_ranges_and_configs():
    model = make()
    for a, b in [(0, 0), (3, 2), (-1, 2), (0, TINY.num_layers + 1)]:
        with pytest.raises(ValueError):
            StageModel(model, a, b)
    with pytest.raises(ValueError):
        dataclasses.replace(TINY, num_kv_heads=4)  # 6 heads not a multiple of 4
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError):  # cache of the wrong layer count
        model.stage(0, 2)(model.embed(tokens(2)), torch.arange(2), model.stage(0, 3).new_cache(1))


@torch.no_grad()
def test_one_token_step_and_generate_greedy():
    model = make()
    prompt = tokens(6)[0].tolist()
    out = generate_greedy(model, prompt, 10)
    assert len(out) == 10
    # the same sequence by argmax over full-sequence forwards (no cache reuse)
    seq = list(prompt)
    for _ in range(10):
        seq.append(int(full_logits(model, torch.tensor([seq]))[0, -1].argmax()))
    assert seq[len(prompt):] == out
    # eos stops generation and is included
    stop = generate_greedy(model, prompt, 10, eos=out[3])
    assert stop == out[:out.index(out[3]) + 1]
    # a stage-level step (hidden in, hidden out) with collection, eager on CPU
    cache = model.new_cache(1)
    model(torch.tensor([prompt]), torch.arange(6), cache)
    step = OneTokenStep(model.stage(0, 3), KVCache(3, 1, TINY.max_seq_len, 2, 8, "cpu", torch.float32),
                        collect=(3,))
    assert step.graph is None
    with pytest.raises(ValueError):
        generate_greedy(model, [], 4)
    with pytest.raises(ValueError):
        generate_greedy(model, prompt, TINY.max_seq_len)


def test_random_init_is_seeded():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.layers[0].attn.wqkv.weight, c.layers[0].attn.wqkv.weight)


def test_tied_embeddings_share_storage():
    model = make(dataclasses.replace(TINY, tie_word_embeddings=True))
    assert model.output.weight is model.tok_embeddings.weight
    assert TINY.num_params == sum(p.numel() for p in make().parameters())
