"""Pipeline draft module (reference/draft.py): anchors, the staircase rows, the tower and its KV cache,
the draft vocabulary head, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from reference.draft import (PDMConfig, PipelineDraftModule, anchor_level, default_anchors, frequent_vocab)
from reference.loaders import random_model
from reference.model import ModelConfig, Transformer
from reference.shapes import shape_config
from reference.spd_controller import DraftInput, PipelinePlan, TokenFeatures, stage_bounds
from sim.errors import InputError

from _tiny import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread for tiny tensors


CFG = tiny_config()


@pytest.fixture(scope="module")
def target():
    return random_model(CFG, torch.device("cpu"), torch.float32, seed=2)


def _features(target, ids, anchors, layers_passed, start=0):
    """TokenFeatures for ids at positions start.. with the real target hidden states at every anchor."""
    cache = target.new_cache(1)
    positions = torch.arange(len(ids) + start)[start:]
    with torch.no_grad():
        emb = target.embed(torch.tensor([ids]))
        _, hid = target.stage(0, CFG.num_layers)(emb, positions, cache, [a for a in anchors if a > 0])
    hid[0] = emb
    return [TokenFeatures(t, start + k, lp, {a: hid[a][0, k] for a in anchors if a <= lp})
            for k, (t, lp) in enumerate(zip(ids, layers_passed))]


def test_default_anchors_follow_the_published_rule():
    assert default_anchors(32, 4) == (0, 8, 24, 31, 32)     # {0, L/n, 3L/n, 6L/n->L, L-1}
    assert default_anchors(32, 8) == (0, 4, 12, 24, 31)
    assert default_anchors(32, 16) == (0, 2, 6, 12, 31)
    assert default_anchors(30, 2) == (0, 15, 29, 30)
    # uneven: 30 layers in 4 stages = 8,8,7,7 -> boundaries 8, 16, 23, 30
    assert default_anchors(30, 4) == (0, 8, 23, 29, 30)
    assert default_anchors(30, 4, split=[5, 10, 10, 5]) == (0, 5, 25, 29, 30)


def test_depth_to_anchor_mapping_uses_real_stage_boundaries():
    plan = PipelinePlan(30, stage_bounds(30, 4), default_anchors(30, 4))  # anchors (0, 8, 23, 29, 30)
    got = [anchor_level(plan.anchors, plan.layers_passed(d)) for d in range(5)]
    # depth 0: embedding only; depth 1 (8 layers): b=8; depth 2 (16): still b=8; depth 3 (23): b=23; done: all
    assert got == [0, 1, 1, 2, 4]
    assert [anchor_level((0, 5, 10), lp) for lp in (0, 4, 5, 9, 10, 99)] == [0, 0, 1, 1, 2, 2]
    # what each stage sends back: the anchors it produces, plus L from the last stage
    assert [plan.stage_collect(s) for s in range(4)] == [(8,), (), (23,), (29, 30)]


def test_row_uses_exactly_the_anchors_reached(target):
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 4, tower_layers=1), seed=1)
    anchors = pdm.config.anchors  # (0, 2, 6, 7, 8)
    for lp in (0, 2, 5, 6, 8):
        tok = _features(target, [5], anchors, [lp])[0]
        base = pdm.rows_from_features([tok])
        j = anchor_level(anchors, lp)
        for i, b in enumerate(anchors[:j + 1]):  # every reached anchor changes the row
            bumped = TokenFeatures(tok.token, tok.position, lp, dict(tok.hidden))
            bumped.hidden[b] = bumped.hidden[b] + 1.0
            assert not torch.allclose(pdm.rows_from_features([bumped]), base), (lp, b)
        # anchors beyond the staircase are never read: a token that carries them gives the same row
        full = _features(target, [5], anchors, [CFG.num_layers])[0]
        padded = TokenFeatures(tok.token, tok.position, lp, full.hidden)
        assert torch.equal(pdm.rows_from_features([padded]), base)


def test_dense_rows_match_per_token_rows(target):
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 3), seed=1)
    ids, lps = [4, 9, 1, 7, 3], [8, 8, 6, 3, 0]
    feats = _features(target, ids, pdm.config.anchors, [8] * 5)
    dense = pdm.build_rows({a: torch.stack([f.hidden[a] for f in feats]) for a in pdm.config.anchors},
                           torch.tensor(lps))
    sparse = pdm.rows_from_features([TokenFeatures(f.token, f.position, lp, f.hidden) for f, lp in zip(feats, lps)])
    assert torch.allclose(dense, sparse, atol=1e-6)


def test_training_layout_tower_matches_cached_tower_and_trains(target):
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 2), seed=3)
    rows = torch.randn(1, 6, CFG.hidden_size, generator=torch.Generator().manual_seed(0))
    pos = torch.arange(6)  # the cached path attends to every slot below a position: start at 0
    cache = pdm.new_cache()
    with torch.no_grad():
        cached = pdm.tower_forward(rows, pos, cache)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    masked = pdm.tower_forward(rows, pos, None, causal)
    assert torch.allclose(cached, masked, atol=1e-5)
    loss = pdm.logits(masked[0, -1]).logsumexp(-1)
    loss.backward()
    assert all(p.grad is not None for p in pdm.tower.parameters())


def test_kv_cache_keeps_completed_rows_and_crops(target):
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 2), seed=4)
    A = pdm.config.anchors
    ids = [3, 8, 2, 6, 1, 5, 9]
    full = _features(target, ids, A, [CFG.num_layers] * len(ids))
    pdm.begin(full[:4])
    assert pdm.cache.length == 4
    infl = [TokenFeatures(6, 4, 4, {a: full[4].hidden[a] for a in A if a <= 4}), _features(target, [1], A, [0], 5)[0]]
    a = pdm.propose(DraftInput([], infl))
    assert pdm.cache.length == 4  # in-flight rows are not kept
    # next cycle: token 4 completed (kept), recompute in-flight rows
    b = pdm.propose(DraftInput([full[4]], [TokenFeatures(1, 5, 4, {x: full[5].hidden[x] for x in A if x <= 4})]))
    assert pdm.cache.length == 5
    # crop back to 4 and replay the same cycle: same logits (the cache holds exactly the prefix)
    pdm.crop(4)
    assert pdm.cache.length == 4
    b2 = pdm.propose(DraftInput([full[4]], [TokenFeatures(1, 5, 4, {x: full[5].hidden[x] for x in A if x <= 4})]))
    assert torch.equal(b, b2)
    # a fresh module fed the same history from scratch agrees
    fresh = PipelineDraftModule(target, pdm.config, seed=4)
    fresh.begin(full[:5])
    b3 = fresh.propose(DraftInput([], [TokenFeatures(1, 5, 4, {x: full[5].hidden[x] for x in A if x <= 4})]))
    assert torch.allclose(b, b3, atol=1e-5)
    assert a.shape == (CFG.vocab_size,)
    with pytest.raises(RuntimeError):  # rows must continue the cache
        pdm.propose(DraftInput([], [TokenFeatures(1, 9, 0, {0: full[5].hidden[0]})]))


def test_reduced_vocab_tied_head_is_target_rows(target):
    vocab = frequent_vocab([5, 5, 5, 7, 7, 1, 2, 2, 9], 3, CFG.vocab_size)
    assert vocab.tolist() == [2, 5, 7]
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 2, draft_vocab_size=3), vocab_ids=vocab)
    assert torch.equal(pdm.head_weight(), target.tok_embeddings.weight[vocab])
    h = torch.randn(CFG.hidden_size)
    # final norm of the target, then the embedding rows of the draft vocabulary (= the LM head rows of a
    # tied-embedding target such as SmolLM2)
    want = target.norm(h) @ target.tok_embeddings.weight[vocab].t()
    assert pdm.logits(h).shape == (3,) and torch.allclose(pdm.logits(h), want, atol=1e-6)
    with pytest.raises(InputError):
        PipelineDraftModule(target, PDMConfig.default(CFG, 2, draft_vocab_size=3), vocab_ids=torch.tensor([1, 1, 2]))


def test_save_load_round_trip(target, tmp_path):
    vocab = torch.tensor([0, 3, 9, 40, 96])
    cfg = PDMConfig.default(CFG, 3, draft_vocab_size=5, tie_head=False, agg_rank=None)
    pdm = PipelineDraftModule(target, cfg, vocab_ids=vocab, seed=7)
    pdm.save(tmp_path / "fp32", dtype=None)
    back = PipelineDraftModule.load(tmp_path / "fp32", target)
    assert back.config == cfg and torch.equal(back.vocab_ids, vocab)
    for k, v in pdm.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    pdm.save(tmp_path / "bf16")  # default: bf16 weights
    small = PipelineDraftModule.load(tmp_path / "bf16", target)
    w = pdm.tower[0].ffn.w2.weight
    assert torch.equal(small.tower[0].ffn.w2.weight, w.to(torch.bfloat16).float())
    assert json.loads((tmp_path / "bf16" / "pdm.json").read_text())["config"]["n"] == 3


def test_bad_checkpoints_are_input_errors(target, tmp_path):
    pdm = PipelineDraftModule(target, PDMConfig.default(CFG, 2))
    pdm.save(tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "pdm.json").read_text())
    other = random_model(ModelConfig(name="other", vocab_size=97, hidden_size=32, intermediate_size=64,
                                     num_layers=8, num_heads=2, num_kv_heads=1, head_dim=16, max_seq_len=64),
                         torch.device("cpu"), torch.float32)
    with pytest.raises(InputError, match="hidden_size"):
        PipelineDraftModule.load(tmp_path / "ok", other)
    with pytest.raises(InputError, match="not found"):
        PipelineDraftModule.load(tmp_path / "missing", target)
    for bad in ({**meta, "format": "x"}, {**meta, "config": {**meta["config"], "exec": "rm -rf"}},
                {**meta, "config": {**meta["config"], "anchors": [3, 1]}}):
        (tmp_path / "ok" / "pdm.json").write_text(json.dumps(bad))
        with pytest.raises(InputError):
            PipelineDraftModule.load(tmp_path / "ok", target)
    (tmp_path / "ok" / "pdm.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        PipelineDraftModule.load(tmp_path / "ok", target)


def test_default_smollm2_checkpoint_is_small():
    """The default PDM for the SmolLM2 shape stays <= 8 MB in bf16 (built on the meta device: no weights)."""
    cfg = shape_config("smollm2-135m")
    with torch.device("meta"):
        target = Transformer(cfg)
    for n in (2, 4, 8):
        pdm = PipelineDraftModule(target, PDMConfig.default(cfg, n))
        size = sum(t.numel() * t.element_size() for t in pdm.stored_tensors(torch.bfloat16).values())
        assert 1e6 < size <= 8 * 2 ** 20, (n, size)


def test_tied_head_of_a_target_built_under_inference_mode():
    """A target loaded inside ``torch.inference_mode`` (as benchmarks/pdm_cost.py does) has inference tensors
    without a version counter: the draft-vocabulary head still gathers its rows and gives the full head's logits
    on those ids."""
    with torch.inference_mode():
        tgt = random_model(CFG, torch.device("cpu"), torch.float32, seed=3)
        ids = torch.tensor([1, 5, 7, 40])
        pdm = PipelineDraftModule(tgt, PDMConfig.default(CFG, 2, draft_vocab_size=4), vocab_ids=ids)
        h = torch.randn(CFG.hidden_size)
        torch.testing.assert_close(pdm.logits(h), (tgt.norm(h) @ tgt.tok_embeddings.weight.t()).float()[ids])
