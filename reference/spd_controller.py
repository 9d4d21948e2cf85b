"""The SPD cycle of SPEC.md 1.1 as a transport-agnostic state machine (the "controller", rank 0).

The controller owns: the list of in-flight tokens (newest first; entry k has passed k stages), the draft
source, verification, the committed tokens and the cycle count. It never runs a decoder layer itself:
a *transport* (``reference.local_engine`` in one process, ``reference.runtime`` over torch.distributed)
executes the stage forwards it asks for and hands back the hidden states the stages produced.

One generation, seen from the transport::

    ctrl = SPDController(plan, head, draft, SamplingConfig(...))
    req = ctrl.start(prompt_ids, max_new_tokens, eos_ids)      # PrefillRequest: run the prompt through
    ctrl.finish_prefill(PrefillOutputs(hidden={...}))           # every stage, collecting req.collect
    while True:
        msg = ctrl.begin_cycle()            # ControlMessage: GO / DISCARD / STOP; broadcast it
        if msg.kind is ControlKind.STOP:
            break
        ... stage s forwards the token at msg.inflight[s] (stage 0 takes ctrl.entry_hidden()) ...
        ctrl.run_draft()                    # PDM forward; uses only pre-cycle features -> overlap it
        ctrl.end_cycle(CycleOutputs(...))   # hidden states the stages produced this cycle
    result = ctrl.result()                  # SPDResult: tokens (== AR's), K, rejects, accept sequence

Cycle accounting (SPEC.md 1.1): K = N + n - 2 + (n-1)R for N >= 2 committed tokens, where R counts the
rejects followed by a refill (a reject whose correction ends the generation adds none). A generation that
ends on its prefill token (N = 1) runs no cycle at all.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

from sim.errors import InputError
from sim.scenario import balanced_split

from .verify import SamplingConfig, Verifier, draft_distribution, sample_token


# --------------------------------------------------------------------------------------------- the plan
def stage_bounds(num_layers: int, n: int, split: Sequence[int] | None = None, *,
                 stages_field: str = "stages", split_field: str = "split") -> tuple[tuple[int, int], ...]:
    """Layer ranges ``[(start, end), ...]`` of n contiguous stages.

    Default: ``sim.scenario.balanced_split`` (the one implementation of SPEC.md 1.1's floor/ceil split: the
    first ``L % n`` stages take the extra layer). ``split`` gives explicit layer counts (must sum to L).
    ``stages_field``/``split_field`` name the inputs in error messages (``spd run`` says ``--stages``).
    """
    if not isinstance(n, int) or n < 1:
        raise InputError(f"{stages_field}: must be a positive integer, got {n!r}")
    if n > num_layers:
        raise InputError(f"{stages_field}: {n} stages do not fit a model of {num_layers} layers")
    if split is None:
        sizes = list(balanced_split(num_layers, n))
    else:
        sizes = [int(x) for x in split]
        if len(sizes) != n or any(x < 1 for x in sizes) or sum(sizes) != num_layers:
            raise InputError(f"{split_field}: {list(split)} must be {n} positive layer counts summing to {num_layers}")
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return tuple(bounds)


@dataclass(frozen=True)
class PipelinePlan:
    """Static facts shared by the controller, the draft module and every stage.

    ``bounds[s] = (start, end)``: stage s runs decoder layers ``[start, end)``. ``anchors``: the hidden-state
    indices the draft module reads (0 = embedding output, i = output of layer i-1), sorted, starting at 0.
    """

    num_layers: int
    bounds: tuple[tuple[int, int], ...]
    anchors: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if len(self.bounds) < 1 or self.bounds[0][0] != 0 or self.bounds[-1][1] != self.num_layers or any(
                a[1] != b[0] for a, b in zip(self.bounds, self.bounds[1:])):
            raise ValueError(f"stage bounds {self.bounds} do not tile [0, {self.num_layers})")
        a = self.anchors
        if not a or a[0] != 0 or list(a) != sorted(set(a)) or a[-1] > self.num_layers:
            raise ValueError(f"anchors {a} must be strictly increasing, start at 0 and stay <= {self.num_layers}")

    @property
    def n(self) -> int:
        return len(self.bounds)

    def layers_passed(self, depth: int) -> int:
        """Decoder layers a token has passed after ``depth`` stages (real boundaries, uneven splits too)."""
        return 0 if depth <= 0 else self.bounds[min(depth, self.n) - 1][1]

    def stage_collect(self, s: int) -> tuple[int, ...]:
        """Hidden indices stage s must send to the controller: the anchors it produces (``start < i <= end``)
        and, for the last stage, its output ``L`` (the finished token's final hidden, for verification)."""
        start, end = self.bounds[s]
        out = [i for i in self.anchors if start < i <= end]
        if s == self.n - 1 and self.num_layers not in out:
            out.append(self.num_layers)
        return tuple(out)


# ------------------------------------------------------------------------------------ messages (interface)
class ControlKind(enum.IntEnum):
    GO = 0       # a new token enters stage 0; every other in-flight token moves one stage deeper
    DISCARD = 1  # a draft was rejected: crop every KV cache to crop_length, drop hidden states in transit,
    #              then the correction token enters stage 0 (the only token in flight)
    STOP = 2     # generation over (EOS or max_new_tokens): stages reset for the next prompt


@dataclass(frozen=True)
class ControlMessage:
    """What rank 0 broadcasts at the start of every cycle (a few ints).

    ``inflight``: positions of the in-flight tokens *after* this message, newest first: stage s forwards the
    token at ``inflight[s]`` this cycle and is idle when ``s >= len(inflight)``. ``token``/``position`` is the
    token entering stage 0 (``inflight[0]``): the prefill token on cycle 1, a draft on GO, the correction on
    DISCARD. ``crop_length``: DISCARD only (else -1): every KV cache keeps positions ``[0, crop_length)``.
    """

    kind: ControlKind
    cycle: int
    token: int = -1
    position: int = -1
    crop_length: int = -1
    inflight: tuple[int, ...] = ()

    def encode(self, n: int) -> list[int]:
        """Fixed-length int list (``5 + n`` ints) for a broadcast of static shape."""
        if len(self.inflight) > n:
            raise ValueError(f"{len(self.inflight)} in-flight tokens for {n} stages")
        pad = list(self.inflight) + [-1] * (n - len(self.inflight))
        return [int(self.kind), self.cycle, self.token, self.position, self.crop_length] + pad

    @classmethod
    def decode(cls, ints: Sequence[int]) -> "ControlMessage":
        kind, cycle, token, position, crop = (int(x) for x in ints[:5])
        inflight = tuple(int(x) for x in ints[5:] if int(x) >= 0)
        return cls(ControlKind(kind), cycle, token, position, crop, inflight)


@dataclass(frozen=True)
class PrefillRequest:
    """Run the prompt through all stages in order (stage 0 input: ``embedding [1, P, d]``); stage s returns
    ``hidden[i]`` for every ``i in collect[s]`` over all P positions (``[1, P, d]`` or ``[P, d]``)."""

    tokens: tuple[int, ...]
    embedding: torch.Tensor
    collect: tuple[tuple[int, ...], ...]

    @property
    def positions(self) -> torch.Tensor:
        return torch.arange(len(self.tokens))


@dataclass
class PrefillOutputs:
    """Hidden states of the prompt, ``{hidden index: [P, d] or [1, P, d]}``: every index the stages were asked
    to collect (including L, the last stage's output)."""

    hidden: dict[int, torch.Tensor]


@dataclass
class StageOutput:
    """What stage s produced this cycle for the token at ``position``: ``hidden[i]`` for ``i in
    plan.stage_collect(s)`` (any shape with d elements)."""

    stage: int
    position: int
    hidden: dict[int, torch.Tensor]


@dataclass
class CycleOutputs:
    """Everything the stages sent to the controller in one cycle (one entry per active stage that collects
    something; stages whose collect set is empty may be omitted)."""

    stages: list[StageOutput] = field(default_factory=list)
    # The target's float32 logits [V] for the token that finished this cycle, when the caller computed them
    # early from the last stage's hidden state (the runtime launches the head while other stages' outputs are
    # still in transit); None: end_cycle computes them. Same function, same input: bit-identical either way.
    final_logits: torch.Tensor | None = None


class TargetHead(Protocol):
    """The part of the target that lives on rank 0 (``reference.model.Transformer`` satisfies it)."""

    def embed(self, tokens: torch.Tensor) -> torch.Tensor: ...          # [B, T] -> [B, T, d]

    def final_logits(self, h: torch.Tensor) -> torch.Tensor: ...        # [B, T, d] -> float32 [B, T, V]


# -------------------------------------------------------------------------------------- draft interface
@dataclass
class TokenFeatures:
    """One token as the draft module sees it: id, position, layers passed, and the anchor hidden states it
    has produced so far (``{anchor index: [d]}``, only anchors <= layers_passed)."""

    token: int
    position: int
    layers_passed: int
    hidden: dict[int, torch.Tensor]


@dataclass
class DraftInput:
    """Features available *before* a cycle (SPEC.md 1.2). ``completed``: tokens that finished since the last
    draft call, full depth, oldest first (0 or 1 in a cycle; prompt tokens come through ``begin``).
    ``inflight``: in-flight tokens oldest first (newest last). The draft predicts ``target_position`` =
    newest position + 1."""

    completed: list[TokenFeatures]
    inflight: list[TokenFeatures]

    @property
    def target_position(self) -> int:
        return self.inflight[-1].position + 1


class DraftSource(Protocol):
    """Proposes logits over a draft vocabulary for the next position; implementations in ``reference.draft``.

    ``vocab_ids``: target token ids of the draft vocabulary (row i of the logits is token vocab_ids[i]), or
    None for the full target vocabulary.
    """

    vocab_ids: torch.Tensor | None

    def begin(self, prompt: list[TokenFeatures]) -> None: ...   # new generation: reset, then prompt rows

    def propose(self, inp: DraftInput) -> torch.Tensor: ...     # float logits [V_draft]

    def crop(self, length: int) -> None: ...                    # flush: keep positions [0, length)


# -------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CycleRecord:
    """One cycle: ``event`` is "fill" (nothing verified), "accept" or "reject"; ``committed`` the tokens
    committed this cycle; ``new_token`` the token inserted at depth 0 for the next cycle (-1 on reject)."""

    cycle: int
    event: str
    committed: tuple[int, ...]
    new_token: int


@dataclass
class SPDResult:
    prompt_len: int
    n: int
    tokens: list[int]              # committed new tokens, prefill token first (== AR's output)
    cycles: int                    # K
    rejects: int                   # every reject, including a final one
    refill_rejects: int            # R: rejects followed by a refill
    accepts: list[bool]            # raw accept/reject sequence of verified drafts (SPEC.md 2)
    stop_reason: str               # "eos" | "max_new_tokens"

    @property
    def marginal_accept_rate(self) -> float:
        """accepted / verified drafts (SPEC.md 2: not Leviathan's conditional alpha)."""
        return sum(self.accepts) / len(self.accepts) if self.accepts else float("nan")

    @property
    def accept_length(self) -> float:
        """L_acc = n·N/K of this generation: its theoretical speedup when the PDM is hidden (SPEC.md 2)."""
        return self.n * len(self.tokens) / self.cycles if self.cycles else float("nan")


@dataclass
class _Entry:
    """An in-flight token. ``q``: the draft distribution over the full vocabulary it was sampled from (None
    for committed tokens: the prefill token and corrections)."""

    token: int
    position: int
    depth: int
    hidden: dict[int, torch.Tensor]
    q: torch.Tensor | None = None


# -------------------------------------------------------------------------------------- the controller
class SPDController:
    """Rank 0's side of SPD for one sequence at a time (batch 1). ``head`` embeds tokens and computes final
    logits; ``max_seq_len`` (the stages' cache capacity) bounds prompt + new tokens + in-flight drafts.
    ``sampling.seed`` seeds each generation afresh: vary it per prompt for independent samples."""

    def __init__(self, plan: PipelinePlan, head: TargetHead, draft: DraftSource,
                 sampling: SamplingConfig = SamplingConfig(), max_seq_len: int | None = None,
                 speculative: bool = False) -> None:
        if plan.n < 2:
            raise InputError("stages: SPD needs at least 2 stages (with 1 there is no draft in flight to verify)")
        if getattr(draft, "greedy_only", False) and not sampling.greedy:
            raise InputError("draft: the replay draft is a temperature-0 measurement tool (use temperature 0)")
        missing = sorted(set(draft_anchors(draft)) - set(plan.anchors))
        if missing:
            raise ValueError(f"the draft reads anchors {missing} that the plan does not collect {plan.anchors}")
        self.plan, self.head, self.draft, self.sampling = plan, head, draft, sampling
        self.max_seq_len = max_seq_len
        # speculative control (``speculate_next``): a GO can run one cycle past the end, one more cache slot
        self.speculative = speculative
        self.verifier = Verifier(sampling)
        self._started = False

    # ---- generation set-up
    def start(self, prompt_ids: Sequence[int], max_new_tokens: int, eos_ids: Sequence[int] = ()) -> PrefillRequest:
        ids = tuple(int(t) for t in prompt_ids)
        if not ids:
            raise InputError("prompt: empty prompt")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")
        # Drafts run up to n-1 positions past the last committed token: they need cache slots too.
        ahead = self.plan.n - 1 + int(self.speculative)
        need = len(ids) + max_new_tokens + ahead
        if self.max_seq_len is not None and need > self.max_seq_len:
            raise InputError(f"prompt: {len(ids)} prompt + {max_new_tokens} new tokens + {ahead} "
                             f"in-flight drafts exceed the context of {self.max_seq_len}")
        self.prompt = ids
        self.max_new_tokens, self.eos_ids = max_new_tokens, frozenset(int(e) for e in eos_ids)
        self.verifier.reset()
        self.tokens: list[int] = []
        self.cycles = self.rejects = self.refill_rejects = 0
        self.accepts: list[bool] = []
        self.records: list[CycleRecord] = []
        self.pipeline: list[_Entry] = []  # newest first
        self._completed: list[TokenFeatures] = []
        self._pending_kind = ControlKind.GO
        self._crop = -1
        self._draft_logits: torch.Tensor | None = None
        self._next_draft: tuple[int, torch.Tensor | None] | None = None  # chosen early by speculate_next
        self.stop_reason = ""
        with torch.no_grad():
            emb = self.head.embed(torch.tensor([ids], device=_device(self.head)))
        self._prompt_emb = emb
        self._started = True
        return PrefillRequest(ids, emb, tuple(self.plan.stage_collect(s) for s in range(self.plan.n)))

    def finish_prefill(self, out: PrefillOutputs) -> None:
        self._need_started()
        P, L = len(self.prompt), self.plan.num_layers
        hidden = {i: h.reshape(P, -1) for i, h in out.hidden.items()}
        hidden[0] = self._prompt_emb.reshape(P, -1)
        _require(hidden, set(self.plan.anchors) | {L}, "prefill")
        prompt_rows = [TokenFeatures(t, p, L, {i: hidden[i][p] for i in self.plan.anchors})
                       for p, t in enumerate(self.prompt)]
        self.draft.begin(prompt_rows)
        with torch.no_grad():
            logits = self.head.final_logits(hidden[L][-1].reshape(1, 1, -1))[0, 0]
        x1 = self.verifier.first_token(logits)
        self.pipeline = [self._new_entry(x1, P, None)]
        self._commit(x1)

    # ---- one cycle
    def begin_cycle(self) -> ControlMessage:
        """The control message that starts the next cycle (STOP once the generation is over)."""
        self._need_started()
        if self.stop_reason:
            return ControlMessage(ControlKind.STOP, self.cycles + 1)
        self._draft_logits = None
        self._next_draft = None
        new = self.pipeline[0]
        return ControlMessage(self._pending_kind, self.cycles + 1, new.token, new.position, self._crop,
                              tuple(e.position for e in self.pipeline))

    def entry_hidden(self) -> torch.Tensor:
        """Stage 0's input this cycle: the embedding ``[1, 1, d]`` of the token entering the pipeline."""
        return self.pipeline[0].hidden[0].reshape(1, 1, -1)

    def run_draft(self) -> None:
        """Draft forward for the position after the newest token; reads only features that existed before
        this cycle's stage forwards, so a transport may run it concurrently with them."""
        if self._draft_logits is not None:
            return
        inflight = [TokenFeatures(e.token, e.position, self.plan.layers_passed(e.depth), e.hidden)
                    for e in reversed(self.pipeline)]
        with torch.no_grad():
            self._draft_logits = self.draft.propose(DraftInput(self._completed, inflight))
        self._completed = []

    def speculate_next(self) -> ControlMessage | None:
        """The GO that ``begin_cycle`` will return after this cycle if it ends without a reject or a stop (a
        fill or an accept), known as soon as the draft forward is done. Speculative control broadcasts it
        before verifying, so the stages go on without waiting for rank 0's head and verify; a reject or a stop
        then costs the stages one wasted cycle (ControllerRank.run_spd). The draft token it carries is chosen
        here and inserted by ``end_cycle``; at T>0 it is sampled before the verify of this cycle draws its
        numbers (a different draw order than without speculation, the same distributions). None once the
        generation is over."""
        self._need_started()
        if self.stop_reason:
            return None
        self.run_draft()
        if self._next_draft is None:
            self._next_draft = self._choose_draft(self._draft_logits)
        new = self.pipeline[0].position + 1
        stay = self.pipeline if len(self.pipeline) < self.plan.n else self.pipeline[:-1]  # the oldest finishes
        return ControlMessage(ControlKind.GO, self.cycles + 2, self._next_draft[0], new, -1,
                              (new,) + tuple(e.position for e in stay))

    def end_cycle(self, out: CycleOutputs) -> CycleRecord:
        """Consume the stages' hidden states; verify when the oldest token finished; commit; pick the next
        draft (or flush on reject)."""
        self._need_started()
        if self.stop_reason:
            raise RuntimeError("end_cycle after the generation stopped")
        self.run_draft()
        self.cycles += 1
        by_pos = {e.position: (k, e) for k, e in enumerate(self.pipeline)}
        for so in out.stages:
            k, e = by_pos.get(so.position, (None, None))
            if e is None or k != so.stage:
                raise RuntimeError(f"cycle {self.cycles}: stage {so.stage} sent position {so.position}, expected "
                                   f"{self.pipeline[so.stage].position if so.stage < len(self.pipeline) else None}")
            e.hidden.update({i: h.reshape(-1) for i, h in so.hidden.items()})
        for k, e in enumerate(self.pipeline):
            e.depth += 1
            _require(e.hidden, set(self.plan.stage_collect(k)) | {0}, f"cycle {self.cycles} position {e.position}")

        n, L = self.plan.n, self.plan.num_layers
        self._pending_kind, self._crop = ControlKind.GO, -1
        if len(self.pipeline) < n:
            if out.final_logits is not None:
                raise RuntimeError(f"cycle {self.cycles}: final logits given, but no token finished")
            return self._insert_draft("fill", ())
        finished = self.pipeline.pop()  # depth n: passed every stage
        self._completed.append(TokenFeatures(finished.token, finished.position, L,
                                             {i: finished.hidden[i] for i in self.plan.anchors}))
        draft = self.pipeline[-1]       # depth n-1: the draft that follows the finished token
        logits = out.final_logits if out.final_logits is not None else self.final_logits(finished.hidden[L])
        res = self.verifier.verify(logits, draft.token, draft.q)
        self.accepts.append(res.accepted)
        if res.accepted:
            self._commit(draft.token)
            if self.stop_reason:
                return self._record("accept", (draft.token,), -1)
            return self._insert_draft("accept", (draft.token,))
        # Reject: the correction becomes the only token in flight; caches go back to the verified prefix.
        self.rejects += 1
        crop = finished.position + 1
        self.pipeline = [self._new_entry(res.token, crop, None)]
        self._commit(res.token)
        if not self.stop_reason:
            self.refill_rejects += 1
            self.draft.crop(crop)
            self._pending_kind, self._crop = ControlKind.DISCARD, crop
        return self._record("reject", (res.token,), -1)

    def final_logits(self, h_final: torch.Tensor) -> torch.Tensor:
        """Final norm + LM head on the hidden state after layer L of one token: float32 logits ``[V]``."""
        with torch.no_grad():
            return self.head.final_logits(h_final.reshape(1, 1, -1))[0, 0]

    # ---- results
    @property
    def done(self) -> bool:
        return bool(self.stop_reason)

    def result(self) -> SPDResult:
        return SPDResult(len(self.prompt), self.plan.n, list(self.tokens), self.cycles, self.rejects,
                         self.refill_rejects, list(self.accepts), self.stop_reason)

    # ---- internals
    def _insert_draft(self, event: str, committed: tuple[int, ...]) -> CycleRecord:
        token, q = self._next_draft or self._choose_draft(self._draft_logits)
        self._next_draft = None
        self.pipeline.insert(0, self._new_entry(token, self.pipeline[0].position + 1, q))
        return self._record(event, committed, token)

    def _choose_draft(self, logits: torch.Tensor) -> tuple[int, torch.Tensor | None]:
        vocab_size = _vocab_size(self.head)
        q = draft_distribution(logits, self.draft.vocab_ids, vocab_size, self.sampling.temperature)
        if q is None:  # greedy: the draft's argmax, no distribution needed
            i = int(logits.argmax())
            return (i if self.draft.vocab_ids is None else int(self.draft.vocab_ids[i])), None
        return sample_token(q, self.verifier.generator), q

    def _new_entry(self, token: int, position: int, q: torch.Tensor | None) -> _Entry:
        with torch.no_grad():
            emb = self.head.embed(torch.tensor([[token]], device=_device(self.head))).reshape(-1)
        return _Entry(token, position, 0, {0: emb}, q)

    def _commit(self, token: int) -> None:
        self.tokens.append(token)
        if token in self.eos_ids:
            self.stop_reason = "eos"
        elif len(self.tokens) >= self.max_new_tokens:
            self.stop_reason = "max_new_tokens"

    def _record(self, event: str, committed: tuple[int, ...], new_token: int) -> CycleRecord:
        rec = CycleRecord(self.cycles, event, committed, new_token)
        self.records.append(rec)
        return rec

    def _need_started(self) -> None:
        if not self._started:
            raise RuntimeError("SPDController.start() was not called")


def draft_anchors(draft: object) -> tuple[int, ...]:
    """The anchors a draft source reads: its PDM config's (a replay draft's inner PDM), else just 0."""
    for obj in (draft, getattr(draft, "inner", None)):
        cfg = getattr(obj, "config", None)
        if cfg is not None and hasattr(cfg, "anchors"):
            return tuple(cfg.anchors)
    return (0,)


def _require(hidden: dict[int, torch.Tensor], needed: set[int], where: str) -> None:
    missing = sorted(needed - set(hidden))
    if missing:
        raise RuntimeError(f"{where}: the stages did not send hidden state(s) {missing}")


def _device(head: TargetHead) -> torch.device:
    return getattr(head, "device", torch.device("cpu"))


def _vocab_size(head: TargetHead) -> int:
    return int(head.config.vocab_size) if hasattr(head, "config") else int(head.vocab_size)
