"""Static-shape draft forward (reference/draft_graph.py, ``PipelineDraftModule.use_graphs``): on CPU the static
path runs eagerly from its buffers and must match the eager path bit for bit, logits and KV cache, for every
layout. (Its CUDA-graph capture cannot run here.)"""
from __future__ import annotations

import random

import pytest
import torch

from reference.draft import PDMConfig, PipelineDraftModule
from reference.loaders import random_model
from reference.local_engine import LocalEngine
from reference.spd_controller import DraftInput, PipelinePlan, TokenFeatures, stage_bounds
from reference.verify import SamplingConfig

from _tiny import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread for tiny tensors

CFG = tiny_config()
L, D = CFG.num_layers, CFG.hidden_size


@pytest.fixture(scope="module")
def target():
    return random_model(CFG, torch.device("cpu"), torch.float32, seed=2)


def _pair(target, n: int, max_layouts: int = 64, **overrides) -> tuple[PipelineDraftModule, PipelineDraftModule]:
    """Two PDMs with the same weights: eager, and static (use_graphs)."""
    cfg = PDMConfig.default(CFG, n, **overrides)
    vocab = torch.tensor([0, 3, 9, 40, 96]) if cfg.draft_vocab_size else None
    eager = PipelineDraftModule(target, cfg, vocab, seed=5)
    static = PipelineDraftModule(target, cfg, vocab, seed=5).use_graphs(True, max_layouts=max_layouts)
    return eager, static


def _drive(eager, static, n: int, steps: int, seed: int) -> None:
    """Random cycles through both modules: 0-2 completed rows, 1-n in-flight rows whose depths follow the plan
    (repeating layouts) or are random (new layouts), random crops; compare everything after each call."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    anchors = eager.config.anchors
    plan = PipelinePlan(L, stage_bounds(L, n), anchors)

    def feat(position: int, layers_passed: int) -> TokenFeatures:
        return TokenFeatures(1, position, layers_passed,
                             {a: torch.randn(D, generator=gen) for a in anchors if a <= layers_passed})

    prompt = [feat(p, L) for p in range(4)]
    eager.begin(prompt)
    static.begin(prompt)
    for _ in range(steps):
        start = eager.cache.length
        if start > CFG.max_seq_len - 2 * n - 4 or rng.random() < 0.15:  # a reject: back to a shorter prefix
            length = rng.randint(len(prompt), start)
            eager.crop(length)
            static.crop(length)
            start = length
        done, flying = rng.choice((0, 1, 1, 2)), rng.randint(1, n)
        if rng.random() < 0.7:  # oldest in flight deepest, as in a real pipeline
            depths = [plan.layers_passed(d) for d in range(flying - 1, -1, -1)]
        else:
            depths = [rng.randint(0, L) for _ in range(flying)]
        completed = [feat(start + k, L) for k in range(done)]
        inflight = [feat(start + done + k, lp) for k, lp in enumerate(depths)]
        a = eager.propose(DraftInput(completed, inflight))
        b = static.propose(DraftInput(completed, inflight))
        assert torch.equal(a, b)
        assert eager.cache.length == static.cache.length == start + done
        # every slot either module ever wrote, in-flight rows past the kept prefix included
        assert torch.equal(eager.cache.k, static.cache.k) and torch.equal(eager.cache.v, static.cache.v)


@pytest.mark.parametrize("n,overrides", [(2, dict(draft_vocab_size=5)),             # tied draft-vocab head
                                         (3, dict(tie_head=False, agg_rank=None)),  # own head, full FC
                                         (4, dict(tower_layers=2))])
def test_static_path_is_bit_identical_to_eager(target, n, overrides):
    eager, static = _pair(target, n, **overrides)
    _drive(eager, static, n, steps=40, seed=n)
    layouts = static._graphs.layouts
    assert len(layouts) >= 3  # several layouts, each reused with new values and positions
    assert all(not lay.graph for lay in layouts.values())  # CPU: no capture


def test_layouts_past_the_cap_run_eagerly(target):
    eager, static = _pair(target, 3, max_layouts=2)
    _drive(eager, static, 3, steps=30, seed=7)
    assert len(static._graphs.layouts) == 2


def test_use_graphs_off_restores_the_eager_path(target):
    _, static = _pair(target, 2)
    assert static.use_graphs(False)._graphs is None


def test_spd_with_static_draft_matches_eager_draft(target):
    """Through the controller (sampling at T>0: rejects, crops, 0/1 completed rows): same draft logits at every
    call, same committed tokens."""

    class Recording:
        def __init__(self, pdm):
            self.pdm, self.vocab_ids, self.config, self.logits = pdm, pdm.vocab_ids, pdm.config, []

        def begin(self, prompt):
            self.pdm.begin(prompt)

        def propose(self, inp):
            self.logits.append(self.pdm.propose(inp))
            return self.logits[-1]

        def crop(self, length):
            self.pdm.crop(length)

    eng = LocalEngine(target, 3)
    eager, static = _pair(target, 3, draft_vocab_size=5)
    runs = [Recording(eager), Recording(static)]
    results = [eng.generate_spd([5, 9, 12, 7], r, 20, sampling=SamplingConfig(1.0, 3)).result for r in runs]
    assert results[0].tokens == results[1].tokens and results[0].rejects > 0
    assert len(runs[0].logits) == len(runs[1].logits) and all(
        torch.equal(x, y) for x, y in zip(runs[0].logits, runs[1].logits))


@pytest.mark.parametrize("draft", ["pdm", "replay"])
def test_run_config_flag_reaches_the_pdm(target, draft):
    from reference.runtime.config import RunConfig
    from reference.runtime.parts import make_draft

    def made(**kw):
        cfg = RunConfig(method="spd", stages=2, model="random", prompts="-", out="-", draft=draft, **kw)
        d = make_draft(cfg, target, lambda ids: [])
        return d.inner if draft == "replay" else d

    assert made()._graphs is None  # CPU: eager
    assert made(device="cuda")._graphs is not None  # CUDA: replayed whenever the stages' steps are
    assert made(device="cuda", cuda_graphs=False)._graphs is None
