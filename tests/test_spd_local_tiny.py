"""SPD in one process on a tiny random fp32 model: token-for-token equal to AR greedy, exact cycle counts,
controlled acceptance with the replay draft, control messages, bad input."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from reference.draft import PDMConfig, PipelineDraftModule, ReplayDraft
from reference.loaders import random_model
from reference.local_engine import LocalEngine
from reference.model import generate_greedy
from reference.verify import SamplingConfig
from reference.spd_controller import (ControlKind, ControlMessage, CycleOutputs, PipelinePlan, PrefillOutputs,
                                      SPDController, StageOutput, stage_bounds)
from sim.closed_form import spd_cycles
from sim.errors import InputError

from _tiny import tiny_config


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one intra-op thread for tiny tensors


CFG = tiny_config(num_layers=7, max_seq_len=96)
PROMPTS = [[3, 14, 15, 92, 65, 35], [27, 18, 28]]
NEW = 24


@pytest.fixture(scope="module")
def model():
    return random_model(CFG, torch.device("cpu"), torch.float32, seed=1)


@pytest.fixture(scope="module")
def reference(model):
    cache: dict[tuple[int, ...], list[int]] = {}

    def ref(ids):
        key = tuple(ids)
        if key not in cache:
            cache[key] = generate_greedy(model, list(key), NEW)
        return cache[key]
    return ref


def _check_cycles(r, n):
    N = len(r.tokens)
    assert r.cycles == spd_cycles(N, n, r.refill_rejects)  # the simulator's formula
    assert r.rejects == len(r.accepts) - sum(r.accepts)
    assert r.refill_rejects in (r.rejects, r.rejects - 1)


def test_ar_and_ar_pipeline_equal_the_model_reference(model, reference):
    for n, split in ((1, None), (3, None), (3, [1, 4, 2])):
        eng = LocalEngine(model, n, split)
        for p in PROMPTS:
            assert eng.generate_ar(p, NEW).tokens == reference(p)
            ar = eng.generate_ar(p, NEW, pipelined=True)
            assert ar.tokens == reference(p) and ar.stage_forwards == (NEW - 1) * n


@pytest.mark.parametrize("n,split", [(2, None), (3, None), (4, None), (3, [1, 4, 2]), (2, [6, 1])])
def test_spd_with_untrained_pdm_equals_ar(model, reference, n, split):
    eng = LocalEngine(model, n, split)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, n, split), seed=n)
    for p in PROMPTS:
        r = eng.generate_spd(p, pdm, NEW).result
        assert r.tokens == reference(p)
        _check_cycles(r, n)


def test_spd_with_reduced_vocab_pdm_equals_ar(model, reference):
    vocab = torch.tensor(sorted(set(reference(PROMPTS[0])) | {0, 1, 2}))
    cfg = PDMConfig.default(CFG, 3, draft_vocab_size=len(vocab), tie_head=False)
    pdm = PipelineDraftModule(model, cfg, vocab_ids=vocab, seed=5)
    r = LocalEngine(model, 3).generate_spd(PROMPTS[0], pdm, NEW).result
    assert r.tokens == reference(PROMPTS[0])
    _check_cycles(r, 3)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_replay_draft_controls_acceptance_and_stays_lossless(model, reference, n, alpha):
    eng = LocalEngine(model, n)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, n), seed=0)
    replay = ReplayDraft(alpha, reference, CFG.vocab_size, seed=3, inner=pdm)
    r = eng.generate_spd(PROMPTS[0], replay, NEW).result
    assert r.tokens == reference(PROMPTS[0])
    _check_cycles(r, n)
    if alpha == 1.0:
        assert r.rejects == 0 and all(r.accepts) and r.cycles == NEW + n - 2
    elif alpha == 0.0:
        assert r.accepts and not any(r.accepts) and len(r.accepts) == NEW - 1  # every committed token after x1
    else:
        assert 0 < r.rejects < len(r.accepts)
    # same seed, same run
    again = eng.generate_spd(PROMPTS[0], ReplayDraft(alpha, reference, CFG.vocab_size, seed=3, inner=pdm), NEW)
    assert again.result.accepts == r.accepts


def test_replay_acceptance_rate_matches_alpha(model, reference):
    eng = LocalEngine(model, 2)
    replay = ReplayDraft(0.7, reference, CFG.vocab_size, seed=11)  # no inner: pure replay, fast
    accepts = []
    for p in PROMPTS:
        for seed in range(8):
            replay.seed = seed
            accepts += eng.generate_spd(p, replay, NEW, anchors=(0,)).result.accepts
    rate = sum(accepts) / len(accepts)
    assert abs(rate - 0.7) < 4 * (0.21 / len(accepts)) ** 0.5


def test_eos_stops_spd_exactly_like_ar(model, reference):
    ref = reference(PROMPTS[0])
    eos = ref[5]  # the first time this id appears ends the generation
    stop_at = ref.index(eos)
    eng = LocalEngine(model, 3)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, 3))
    ar = eng.generate_ar(PROMPTS[0], NEW, eos_ids=[eos])
    assert ar.tokens == ref[:stop_at + 1] and ar.stop_reason == "eos"
    for draft in (pdm, ReplayDraft(1.0, reference, CFG.vocab_size), ReplayDraft(0.0, reference, CFG.vocab_size)):
        r = eng.generate_spd(PROMPTS[0], draft, NEW, eos_ids=[eos]).result
        assert r.tokens == ar.tokens and r.stop_reason == "eos"
        if len(r.tokens) >= 2:
            _check_cycles(r, 3)


def test_one_token_generation_runs_no_cycle(model):
    eng = LocalEngine(model, 2)
    r = eng.generate_spd(PROMPTS[1], PipelineDraftModule(model, PDMConfig.default(CFG, 2)), 1).result
    assert len(r.tokens) == 1 and r.cycles == 0


def test_control_messages_follow_the_cycle(model, reference):
    """Drive the controller by hand (as a transport would) and check what it asks for."""
    n, P = 3, len(PROMPTS[0])
    eng = LocalEngine(model, n)
    run = eng.generate_spd(PROMPTS[0], ReplayDraft(0.5, reference, CFG.vocab_size, seed=1), NEW, anchors=(0,))
    events = [rec.event for rec in run.records]
    assert events[:n - 1] == ["fill"] * (n - 1)
    plan = eng.plan((0,))
    ctrl = SPDController(plan, model, ReplayDraft(0.5, reference, CFG.vocab_size, seed=1), max_seq_len=CFG.max_seq_len)
    req = ctrl.start(PROMPTS[0], NEW)
    h, hid = req.embedding, {}
    caches = [st.new_cache(1) for st in eng.stages]
    for st, c, col in zip(eng.stages, caches, req.collect):
        h, got = st(h, req.positions, c, col)
        hid.update(got)
    ctrl.finish_prefill(PrefillOutputs(hid))
    msgs, transit = [], [None] * n
    while (msg := ctrl.begin_cycle()).kind is not ControlKind.STOP:
        assert ControlMessage.decode(msg.encode(n)) == msg
        msgs.append(msg)
        if msg.kind is ControlKind.DISCARD:
            for c in caches:
                c.crop(msg.crop_length)
            assert msg.position == msg.crop_length and msg.inflight == (msg.position,)
        transit[0] = ctrl.entry_hidden()
        nxt, outs = [None] * n, []
        for s, pos in enumerate(msg.inflight):
            h, got = eng.stages[s](transit[s], torch.tensor([pos]), caches[s], plan.stage_collect(s))
            if s + 1 < n:
                nxt[s + 1] = h
            outs.append(StageOutput(s, pos, got))
        ctrl.end_cycle(CycleOutputs(outs))
        transit = nxt
    assert msgs[0].kind is ControlKind.GO and msgs[0].position == P and msgs[0].inflight == (P,)
    assert [m.inflight for m in msgs[:n]] == [(P,), (P + 1, P), (P + 2, P + 1, P)]
    assert sum(m.kind is ControlKind.DISCARD for m in msgs) == ctrl.result().refill_rejects
    assert ctrl.result().tokens == run.result.tokens == reference(PROMPTS[0])
    assert [m.cycle for m in msgs] == list(range(1, len(msgs) + 1))


def test_transport_sending_the_wrong_position_is_caught(model, reference):
    eng = LocalEngine(model, 2)
    ctrl = SPDController(eng.plan(), model, ReplayDraft(1.0, reference, CFG.vocab_size), max_seq_len=96)
    req = ctrl.start(PROMPTS[1], 5)
    h, hid = req.embedding, {}
    for st, col in zip(eng.stages, req.collect):
        h, got = st(h, req.positions, st.new_cache(1), col)
        hid.update(got)
    ctrl.finish_prefill(PrefillOutputs(hid))
    ctrl.begin_cycle()
    with pytest.raises(RuntimeError, match="stage 0 sent position 9"):
        ctrl.end_cycle(CycleOutputs([StageOutput(0, 9, {})]))


def test_bad_input(model, reference):
    with pytest.raises(InputError, match="at least 2"):
        SPDController(PipelinePlan(7, stage_bounds(7, 1)), model, ReplayDraft(1.0, reference, 97))
    with pytest.raises(InputError, match="do not fit"):
        LocalEngine(model, 8)
    with pytest.raises(InputError, match="summing"):
        LocalEngine(model, 2, [3, 3])
    eng = LocalEngine(model, 2)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, 2))
    with pytest.raises(InputError, match="empty"):
        eng.generate_spd([], pdm, 4)
    with pytest.raises(InputError, match="context"):
        eng.generate_spd([1] * 80, pdm, 16)  # 80 + 16 + 1 in-flight > 96
    with pytest.raises(InputError, match="vocabulary"):
        eng.generate_spd([1, 500], pdm, 4)
    with pytest.raises(InputError, match="temperature 0"):
        eng.generate_spd([1, 2], ReplayDraft(1.0, reference, 97), 4, sampling=SamplingConfig(0.8))
    with pytest.raises(InputError, match="alpha"):
        ReplayDraft(1.5, reference, 97)
    with pytest.raises(InputError):
        PDMConfig.default(CFG, 2, tower_layers=0)
    with pytest.raises(ValueError, match="anchors"):  # a plan that does not collect what the PDM reads
        SPDController(PipelinePlan(7, stage_bounds(7, 2)), model, pdm)
    # the context limit is exact: 79 + 16 + 1 fits
    assert len(eng.generate_spd([1] * 79, ReplayDraft(0.0, lambda ids: [], 97), 16, anchors=(0,)).result.tokens) == 16
    assert dataclasses.is_dataclass(eng.generate_ar([1, 2], 2))


@pytest.mark.parametrize("n,split", [(3, None), (4, [1, 3, 2, 1])])
def test_draft_sees_the_staircase_and_only_pre_cycle_features(model, reference, n, split):
    """Every propose() gets at most n+1 rows: the token completed last cycle at full depth, then the in-flight
    tokens oldest first at the depths of the real split, holding exactly the anchors they have reached."""
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, n, split), seed=2)
    seen = []

    class Spy:
        vocab_ids, config = None, pdm.config

        def begin(self, prompt):
            pdm.begin(prompt)

        def propose(self, inp):
            seen.append(([(t.position, t.layers_passed, sorted(t.hidden)) for t in inp.completed],
                         [(t.position, t.layers_passed, sorted(t.hidden)) for t in inp.inflight]))
            return pdm.propose(inp)

        def crop(self, length):
            pdm.crop(length)

    eng = LocalEngine(model, n, split)
    r = eng.generate_spd(PROMPTS[0], ReplayDraft(1.0, reference, CFG.vocab_size, inner=Spy()), NEW).result
    assert r.tokens == reference(PROMPTS[0])
    passed = [0] + [b[1] for b in eng.bounds]
    A, L = pdm.config.anchors, CFG.num_layers
    for completed, inflight in seen:
        assert len(completed) + len(inflight) <= n + 1 and len(completed) <= 1
        for _, lp, anchors in completed:
            assert lp == L and anchors == list(A)
        # oldest first: depths len-1 .. 0, consecutive positions
        depths = list(range(len(inflight) - 1, -1, -1))
        assert [lp for _, lp, _ in inflight] == [passed[d] for d in depths]
        assert [p for p, _, _ in inflight] == list(range(inflight[0][0], inflight[0][0] + len(inflight)))
        for _, lp, anchors in inflight:
            assert anchors == [a for a in A if a <= lp]
    # steady state (alpha = 1): a full staircase every cycle after the fill
    assert all(len(c) == 1 and len(i) == n for c, i in seen[n:])


@pytest.mark.parametrize("n", [2, 4])
def test_greedy_emulation_reproduces_the_real_accept_sequence(model, reference, n):
    """emulate_spd_greedy (stage outputs looked up from one whole-sequence forward) gives the same accept/reject
    sequence and cycle count as the real pipeline, for a PDM and for replay drafts."""
    eng = LocalEngine(model, n)
    pdm = PipelineDraftModule(model, PDMConfig.default(CFG, n), seed=6)
    accepts = []
    for p in PROMPTS:
        ref = reference(p)
        for make in (lambda: pdm, lambda: ReplayDraft(0.6, reference, CFG.vocab_size, seed=4, inner=pdm),
                     lambda: _DeepFeatureDraft(model)):
            real = eng.generate_spd(p, make(), NEW, anchors=pdm.config.anchors).result
            emu = eng.emulate_spd_greedy(p, ref, make(), anchors=pdm.config.anchors).result
            assert (emu.tokens, emu.accepts, emu.cycles, emu.refill_rejects) == (
                real.tokens, real.accepts, real.cycles, real.refill_rejects)
            accepts.append(sum(real.accepts))
    assert max(accepts) > 0  # some draft got accepts, so feature-dependent accept decisions were compared


class _DeepFeatureDraft:
    """A draft whose proposals depend on deep features: the target's head on the deepest hidden state of the
    oldest token it is shown (layer skipping). It gets accepts on this model's repetitive output."""

    vocab_ids = None

    def __init__(self, model):
        self.model = model

    def begin(self, prompt):
        pass

    def propose(self, inp):
        deepest = (inp.completed or inp.inflight)[0]
        return self.model.final_logits(deepest.hidden[max(deepest.hidden)].view(1, 1, -1))[0, 0]

    def crop(self, length):
        pass
