"""The batched training/eval layouts reproduce the executor's draft module exactly (reference/training/layout.py),
and the training loop learns, checkpoints and resumes."""
from __future__ import annotations

import json

import pytest
import torch

from reference.draft import PipelineDraftModule
from reference.loaders import random_model
from reference.training.drafts import DraftDims, chain_outputs, make_config, spd_logits
from reference.training.evaluate import EvalPrompt, engine_crosscheck
from reference.training.features import Batch, FeatureStore
from reference.training.generate import generate_batch, pad_batch, teacher_forced_hidden
from reference.training.layout import staircase_layout
from reference.training.trainer import TrainSettings, train

from _tiny import tiny_config

CFG = tiny_config(max_seq_len=128)
DIMS = DraftDims(tower_layers=2, tower_heads=2, tower_kv_heads=1, tower_ffn=32, agg_rank=8, draft_vocab_size=None)


@pytest.fixture(scope="module")
def target():
    return random_model(CFG, torch.device("cpu"), torch.float32, seed=2)


def _prompts(k: int) -> list[EvalPrompt]:
    g = torch.Generator().manual_seed(5)
    return [EvalPrompt("x", i, tuple(torch.randint(0, 97, (4 + i,), generator=g).tolist())) for i in range(k)]


def test_staircase_mask_matches_the_rule():
    lay = staircase_layout(torch.tensor([6]), torch.tensor([2]), 6, torch.tensor([[3] * 6]), [0, 2, 4], 8)
    T, n = 6, 3
    m = lay.mask[0, 0]
    q = T + 4 * n  # query t=4 with m=3: in flight 2, 3, 4 at depths 2, 1, 0
    assert int(lay.query_inflight[0, 4]) == 3
    assert m[q, :T].tolist() == [True, True, False, False, False, False]  # full rows <= t - m = 1
    assert m[q, T + 4 * n: T + 5 * n].tolist() == [True, True, True]   # its own in-flight rows
    assert not m[q, T + 3 * n: T + 4 * n].any()                         # never another query's rows
    # t=2 (the prefill token is newest): only one token can be in flight
    assert int(lay.query_inflight[0, 2]) == 1
    assert lay.row_layers[0, T + 4 * n:T + 5 * n].tolist() == [0, 2, 4]
    assert lay.row_pos[0, T + 4 * n:T + 5 * n].tolist() == [4, 3, 2]
    assert not lay.query_valid[0, 5] and not lay.query_valid[0, 1]  # no token after the end; prompt


@pytest.mark.parametrize("n", [2, 3])
def test_layout_logits_equal_the_engine_draft_logits(target, n):
    """Every draft the in-process engine verifies gets, from the batched layout, the same logits (T=0 and T=1),
    and the emulated schedule reproduces the engine's accept sequence and cycle count at T=0."""
    pdm = PipelineDraftModule(target, make_config("spd", target, n, DIMS), seed=3).eval()
    for temperature in (0.0, 1.0):
        cc = engine_crosscheck(target, pdm, _prompts(2), 14, temperature, 0, ())
        assert cc.compared_drafts >= 20
        assert cc.max_logit_diff < 1e-4
        assert cc.tokens_equal and cc.accepts_equal and cc.cycles_equal


def test_chain_unroll_feeds_its_own_features(target):
    """Step k of a chain from start s equals running the head step by step on its own predicted features."""
    pdm = PipelineDraftModule(target, make_config("chain", target, 2, DIMS), seed=4).eval()
    seq = list(range(3, 15))
    tokens, lengths = pad_batch([seq], torch.device("cpu"))
    L = CFG.num_layers
    hid = teacher_forced_hidden(target, tokens, [0, L])
    batch = Batch(tokens, lengths, torch.tensor([3]), hid)
    with torch.no_grad():
        out, _ = chain_outputs(pdm, batch, 3)
        s = 5  # manual: rows 0..s real (emb x_j, h_L[j-1]); then (emb x_{s+1}, o_s), (emb x_{s+2}, o_{s+1})
        emb, hL = hid[0][0], hid[L][0]
        feats = [torch.zeros_like(hL[0])] + [hL[j - 1] for j in range(1, s + 1)]
        embs = [emb[j] for j in range(s + 1)]
        outs = []
        for k in range(3):
            rows = pdm.build_rows({0: torch.stack(embs)[None], L: torch.stack(feats)[None]},
                                  torch.full((1, len(embs)), L))
            T = len(embs)
            o = pdm.tower_forward(rows, torch.arange(T)[None], attn_mask=torch.tril(torch.ones(T, T, dtype=torch.bool))[None, None])
            outs.append(o[0, -1])
            embs.append(emb[s + k + 1])
            feats.append(o[0, -1])
    for k in range(3):
        assert torch.allclose(out[0, s, k], outs[k], atol=1e-5)


def test_training_reduces_loss_and_resumes_exactly(target, tmp_path):
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 97, (4,), generator=g).tolist() for _ in range(8)]
    paths = generate_batch(target, prompts, 20)
    seqs = [p + q for p, q in zip(prompts, paths)]
    cfg = make_config("spd", target, 3, DIMS)
    store = FeatureStore(target, seqs, [4] * 8, cfg.anchors, progress=False)
    s = TrainSettings(budget_s=1e9, max_steps=30, batch_size=4, lr=3e-3, warmup_steps=2)
    a = PipelineDraftModule(target, cfg, seed=0)
    first = train("spd", a, store, s, tmp_path / "a", progress=False)
    assert first.steps == 30 and first.stopped_by == "max_steps"
    b = PipelineDraftModule(target, cfg, seed=0)
    cut = train("spd", b, store, s, tmp_path / "b", progress=False, stop_at_step=12)  # an interruption
    assert cut.stopped_by == "interrupted" and cut.steps == 12
    resumed = train("spd", b, store, s, tmp_path / "b", progress=False)
    assert resumed.resumed_from_step == 12 and resumed.steps == 30
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k
    # learning happened: the KL on a fixed batch fell
    from reference.training.drafts import kl_loss, teacher_logits

    fresh = PipelineDraftModule(target, cfg, seed=0).eval()
    batch = store.batch(list(range(8)))
    with torch.no_grad():
        kls = []
        for pdm in (fresh, a.eval()):
            logits, lay = spd_logits(pdm, batch, 3)
            kls.append(float(kl_loss(logits, teacher_logits(target, batch.hidden[8], None), lay.query_valid)[0]))
    assert kls[1] < kls[0] * 0.9


def test_extra_layout_stages_train_an_n2_drafter_on_the_n3_staircase(target):
    """layout_extra_stages=1: the n=2 drafter's training loss is the n=3 drafter's (same weights, same draws),
    and a drafter's weights do not depend on n, so the trained drafter is then used at n=2."""
    from reference.training.trainer import step_loss

    g = torch.Generator().manual_seed(4)
    seqs = [torch.randint(0, 97, (24,), generator=g).tolist() for _ in range(4)]
    anchors = (0, 2, 7, 8)
    store = FeatureStore(target, seqs, [4] * 4, anchors, progress=False)
    n2 = PipelineDraftModule(target, make_config("spd", target, 2, DIMS, anchors), seed=0)
    n3 = PipelineDraftModule(target, make_config("spd", target, 3, DIMS, anchors), seed=0)
    n3.load_state_dict(n2.state_dict())
    losses = {}
    for name, pdm, extra in (("n2+1", n2, 1), ("n3", n3, 0), ("n2", n2, 0)):
        s = TrainSettings(layout_extra_stages=extra)
        with torch.no_grad():
            losses[name] = float(step_loss("spd", pdm, store, [0, 1, 2, 3], s, torch.Generator().manual_seed(7))[0])
    assert losses["n2+1"] == pytest.approx(losses["n3"], rel=1e-6)
    assert abs(losses["n2"] - losses["n3"]) > 1e-6  # without the option: the n=2 staircase, another loss


def test_train_draft_command_end_to_end(tmp_path, capsys):
    """Data file -> spd train-draft (three methods) -> checkpoints with train.json that load back."""
    from reference.training.checkpoints import load_checkpoint
    from reference.training.data import TrainingData
    from sim.cli import main

    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 97, (30,), generator=g).tolist() for _ in range(6)]
    TrainingData(seqs, [5] * 6, [False] * 6, {"test": True}).save(tmp_path / "d.safetensors")
    model = "random:custom:" + json.dumps(dict(vocab_size=97, hidden_size=64, intermediate_size=128, num_layers=8,
                                                  num_heads=4, num_kv_heads=2, head_dim=16))
    args = ["train-draft", "--model", model, "--data", str(tmp_path / "d.safetensors"), "--out-dir", str(tmp_path / "ck"),
            "--methods", "spd,chain,ppsd", "--stages", "2", "--ppsd-stages", "2", "--max-steps", "2", "--batch-size", "2",
            "--tower-heads", "2", "--tower-ffn", "16", "--agg-rank", "4", "--draft-vocab", "40", "--holdout", "1",
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    names = sorted(p.name for p in (tmp_path / "ck").iterdir() if not p.name.startswith("."))
    assert names == ["smollm2-chain", "smollm2-pdm-n2", "smollm2-ppsd-n2"]
    from reference.loaders import load_model

    tgt, _ = load_model(model, "cpu", "fp32", max_seq_len=1024)
    pdm, meta = load_checkpoint(tmp_path / "ck" / "smollm2-ppsd-n2", tgt)
    assert meta["method"] == "ppsd" and pdm.config.anchors == (0, 4) and pdm.config.draft_vocab_size == 40
    assert meta["training"]["result"]["steps"] == 2 and meta["data"]["provenance"] == {"test": True}
    # a second call continues from the checkpoint (state kept in the work dir -> resumes the step count)
    assert main(args[:-1] + ["--max-steps", "3", "--no-progress"]) == 0
    _, meta2 = load_checkpoint(tmp_path / "ck" / "smollm2-pdm-n2", tgt)
    assert meta2["training"]["result"]["resumed_from_step"] == 2 and meta2["training"]["result"]["steps"] == 3
    # a fresh machine (no work dir) asking for a wider tower: the checkpoint is widened, not thrown away
    import shutil

    shutil.rmtree(tmp_path / "ck" / ".work")
    assert main(args + ["--methods", "spd", "--tower-ffn", "24", "--agg-rank", "6"]) == 0
    wide, meta3 = load_checkpoint(tmp_path / "ck" / "smollm2-pdm-n2", tgt)
    assert (wide.config.tower_ffn, wide.config.agg_rank) == (24, 6)
    assert meta3["warm_started_from"]["widened_from"] == {"tower_ffn": 16, "agg_rank": 4}
    assert meta3["warm_started_from"]["steps"] == 3
    # a narrower shape than the checkpoint cannot continue it: trained from scratch, and it says so
    shutil.rmtree(tmp_path / "ck" / ".work")
    capsys.readouterr()
    assert main(args + ["--methods", "spd"]) == 0
    assert "smollm2-pdm-n2 has another shape (tower_ffn 24, agg_rank 6, ...) than asked for" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "ck" / "smollm2-pdm-n2", tgt)[1]["warm_started_from"] is None
    # bad input: one line, exit 2
    assert main(args[:4] + [str(tmp_path / "missing.safetensors")] + args[5:]) == 2
    assert main(args + ["--stages", "1"]) == 2
    assert main(args + ["--layout-extra-stages", "-1"]) == 2
    assert main(args + ["--layout-extra-stages", "7"]) == 2  # n=2 + 7 > 8 layers


def test_widening_a_trained_drafter_keeps_its_function_then_trains_the_new_units(target):
    """reference.training.widen: a narrow drafter copied into a wider tower FFN and aggregation rank gives the
    same logits (the new units' output weights start at zero), and one training step moves the new units."""
    import dataclasses

    from reference.training.trainer import step_loss
    from reference.training.widen import can_widen, widen_into

    g = torch.Generator().manual_seed(6)
    seqs = [torch.randint(0, 97, (20,), generator=g).tolist() for _ in range(3)]
    narrow_cfg = make_config("spd", target, 3, DIMS)
    wide_cfg = dataclasses.replace(narrow_cfg, tower_ffn=48, agg_rank=12)
    assert can_widen(narrow_cfg, wide_cfg) and not can_widen(wide_cfg, narrow_cfg)
    assert not can_widen(narrow_cfg, dataclasses.replace(wide_cfg, tower_layers=3))
    narrow = PipelineDraftModule(target, narrow_cfg, seed=1)
    with torch.no_grad():  # a "trained" narrow drafter: weights far from the tiny initialisation
        for p in narrow.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    wide = PipelineDraftModule(target, wide_cfg, seed=2)
    widen_into(wide, narrow)
    store = FeatureStore(target, seqs, [4] * 3, narrow_cfg.anchors, progress=False)
    batch = store.batch([0, 1, 2])
    with torch.no_grad():
        a, _ = spd_logits(narrow.eval(), batch, 3)
        b, _ = spd_logits(wide.eval(), batch, 3)
    assert a.abs().max() > 0.1
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    w2 = wide.tower[0].ffn.w2.weight
    assert float(w2.detach()[:, 32:].abs().max()) == 0.0 and float(w2.detach()[:, :32].abs().max()) > 0
    wide.train()
    loss, _, _ = step_loss("spd", wide, store, [0, 1, 2], TrainSettings(), torch.Generator().manual_seed(7))
    loss.backward()
    assert float(w2.grad[:, 32:].abs().max()) > 0  # the new units learn from the first step
