"""AR, AR through n stages, and SPD in one process: the losslessness oracle.

SPD here drives the same :class:`~reference.spd_controller.SPDController` a distributed run puts on rank 0,
and calls the stages exactly as the distributed dataflow would: each cycle stage s forwards what stage s-1
produced in the *previous* cycle (the hidden states "in transit"), caches are cropped on DISCARD, and only
the hidden states of ``plan.stage_collect(s)`` go back to the controller.

All three methods use per-stage static caches of ``config.max_seq_len`` slots, the capacity
``reference.model.generate_greedy`` uses, so attention reductions are bit-identical across methods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from sim.errors import InputError

from .model import KVCache, StageModel, Transformer
from .spd_controller import (ControlKind, CycleOutputs, DraftSource, PipelinePlan, PrefillOutputs, SPDController,
                             SPDResult, StageOutput, draft_anchors, stage_bounds)
from .verify import SamplingConfig, Verifier


@dataclass
class ARResult:
    """AR (``stages == 1``) or AR through ``stages`` stages: ``tokens`` prefill token first;
    ``stage_forwards`` one-token stage forwards after the prefill (``(N-1)·stages``)."""

    method: str
    prompt_len: int
    stages: int
    tokens: list[int]
    stage_forwards: int
    stop_reason: str
    wall_s: float


@dataclass
class SPDRun:
    """An SPD generation and its wall time (in-process; CPU timings prove nothing about speedups)."""

    result: SPDResult
    wall_s: float
    records: list = field(default_factory=list)


class LocalEngine:
    """One model, split into ``n`` stages (``split``: explicit layer counts). Methods take token ids."""

    def __init__(self, model: Transformer, n: int = 1, split: Sequence[int] | None = None) -> None:
        self.model = model
        self.config = model.config
        self.bounds = stage_bounds(self.config.num_layers, n, split)
        self.stages: list[StageModel] = [model.stage(s, e) for s, e in self.bounds]

    @property
    def n(self) -> int:
        return len(self.stages)

    def plan(self, anchors: Sequence[int] = (0,)) -> PipelinePlan:
        return PipelinePlan(self.config.num_layers, self.bounds, tuple(anchors))

    def _caches(self, stages: Sequence[StageModel]) -> list[KVCache]:
        return [st.new_cache(1) for st in stages]

    def _check(self, prompt_ids: Sequence[int], max_new_tokens: int, extra_slots: int = 0) -> tuple[int, ...]:
        ids = tuple(int(t) for t in prompt_ids)
        if not ids:
            raise InputError("prompt: empty prompt")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
        if len(ids) + max_new_tokens + extra_slots > self.config.max_seq_len:
            raise InputError(f"prompt: {len(ids)} prompt + {max_new_tokens} new tokens exceed the context of "
                             f"{self.config.max_seq_len}")
        bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise InputError(f"prompt: token id {bad[0]} outside the vocabulary [0, {self.config.vocab_size})")
        return ids

    # ---------------------------------------------------------------------------------------------- AR
    @torch.inference_mode()
    def generate_ar(self, prompt_ids: Sequence[int], max_new_tokens: int, eos_ids: Sequence[int] = (),
                    sampling: SamplingConfig = SamplingConfig(), pipelined: bool = False) -> ARResult:
        """AR decoding. ``pipelined=False``: one device, all layers as one stage. ``True``: every token walks
        the n stages one after another (no speculation: the pure cost of pipelining)."""
        ids = self._check(prompt_ids, max_new_tokens)
        stages = self.stages if pipelined else [self.model.stage(0, self.config.num_layers)]
        caches = self._caches(stages)
        verifier = Verifier(sampling)
        eos = frozenset(int(e) for e in eos_ids)
        t0 = time.perf_counter()

        def run(h: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            for st, cache in zip(stages, caches):
                h, _ = st(h, positions, cache)
            return self.model.final_logits(h)[0, -1]

        P = len(ids)
        tok = verifier.first_token(run(self.model.embed(torch.tensor([ids], device=self.model.device)),
                                       torch.arange(P)))
        tokens, forwards = [tok], 0
        while len(tokens) < max_new_tokens and tok not in eos:
            pos = P + len(tokens) - 1
            h = self.model.embed(torch.tensor([[tok]], device=self.model.device))
            tok = verifier.first_token(run(h, torch.tensor([pos])))
            tokens.append(tok)
            forwards += len(stages)
        reason = "eos" if tok in eos else "max_new_tokens"
        method = "ar_pipeline" if pipelined else "ar"
        return ARResult(method, P, len(stages), tokens, forwards, reason, time.perf_counter() - t0)

    # --------------------------------------------------------------------------------------------- SPD
    @torch.inference_mode()
    def generate_spd(self, prompt_ids: Sequence[int], draft: DraftSource, max_new_tokens: int,
                     eos_ids: Sequence[int] = (), sampling: SamplingConfig = SamplingConfig(),
                     anchors: Sequence[int] | None = None) -> SPDRun:
        """SPD with the stages called in pipeline order each cycle. ``anchors`` default to the draft's
        (``draft.config.anchors`` for a PDM, or ``draft.inner``'s for a replay draft)."""
        ids = self._check(prompt_ids, max_new_tokens, self.n - 1)
        plan = self.plan(draft_anchors(draft) if anchors is None else anchors)
        ctrl = SPDController(plan, self.model, draft, sampling, self.config.max_seq_len)
        caches = self._caches(self.stages)
        t0 = time.perf_counter()

        req = ctrl.start(ids, max_new_tokens, eos_ids)
        h, hidden = req.embedding, {}
        for st, cache, collect in zip(self.stages, caches, req.collect):
            h, got = st(h, req.positions, cache, collect)
            hidden.update(got)
        ctrl.finish_prefill(PrefillOutputs(hidden))

        transit: list[torch.Tensor | None] = [None] * self.n  # transit[s]: stage s's input this cycle
        while True:
            msg = ctrl.begin_cycle()
            if msg.kind is ControlKind.STOP:
                break
            if msg.kind is ControlKind.DISCARD:
                for cache in caches:
                    cache.crop(msg.crop_length)
                transit = [None] * self.n  # everything in transit belonged to discarded drafts
            transit[0] = ctrl.entry_hidden()
            nxt: list[torch.Tensor | None] = [None] * self.n
            outs = []
            for s, pos in enumerate(msg.inflight):
                x = transit[s]
                if x is None:
                    raise RuntimeError(f"cycle {msg.cycle}: stage {s} has no input for position {pos}")
                h, got = self.stages[s](x, torch.tensor([pos]), caches[s], plan.stage_collect(s))
                if s + 1 < self.n:
                    nxt[s + 1] = h
                outs.append(StageOutput(s, pos, got))
            ctrl.run_draft()
            ctrl.end_cycle(CycleOutputs(outs))
            transit = nxt
        return SPDRun(ctrl.result(), time.perf_counter() - t0, list(ctrl.records))

    # ------------------------------------------------------------------------------- greedy emulation
    @torch.inference_mode()
    def emulate_spd_greedy(self, prompt_ids: Sequence[int], ar_tokens: Sequence[int], draft: DraftSource,
                           eos_ids: Sequence[int] = (), anchors: Sequence[int] | None = None) -> SPDRun:
        """SPD's greedy accept/reject sequence without running the stages per cycle (acceptance evaluation).

        One forward over prompt + ``ar_tokens`` (the AR greedy output) gives every position's hidden states;
        the controller then runs as usual with each stage's output looked up by *position*. This is exact:
        SPD commits AR's tokens, so every token in flight ahead of the first wrong draft is AR's token at its
        position, with AR's hidden states (causal attention); a wrong draft and everything drafted after it
        (the only rows whose looked-up features are not their own) are flushed when that draft is rejected,
        before any of them is verified. Up to floating-point differences between a whole-sequence forward and
        one-token steps (a near-tie can flip), the result equals :meth:`generate_spd`'s.
        """
        ids = self._check(prompt_ids, len(ar_tokens), self.n - 1)
        ar = [int(t) for t in ar_tokens]
        plan = self.plan(draft_anchors(draft) if anchors is None else anchors)
        ctrl = SPDController(plan, self.model, draft, SamplingConfig(), self.config.max_seq_len)
        t0 = time.perf_counter()
        seq = list(ids) + ar
        wanted = sorted(set(plan.anchors[1:]) | {self.config.num_layers})
        emb = self.model.embed(torch.tensor([seq], device=self.model.device))
        _, hidden = self.model.stage(0, self.config.num_layers)(emb, torch.arange(len(seq)),
                                                                self.model.new_cache(1), wanted)
        hidden[0] = emb
        table = {i: x[0] for i, x in hidden.items()}  # {index: [len(seq), d]}
        P, last = len(ids), len(seq) - 1

        ctrl.start(ids, len(ar), eos_ids)
        ctrl.finish_prefill(PrefillOutputs({i: x[:P] for i, x in table.items()}))
        while (msg := ctrl.begin_cycle()).kind is not ControlKind.STOP:
            # drafts past the AR output are never verified: any stand-in features will do
            outs = [StageOutput(s, pos, {i: table[i][min(pos, last)] for i in plan.stage_collect(s)})
                    for s, pos in enumerate(msg.inflight)]
            ctrl.run_draft()
            ctrl.end_cycle(CycleOutputs(outs))
        if ctrl.tokens != ar:
            raise RuntimeError("emulation diverged from the AR tokens (a near-tie decided differently in the "
                               "whole-sequence forward): use generate_spd for this prompt")
        return SPDRun(ctrl.result(), time.perf_counter() - t0, list(ctrl.records))

