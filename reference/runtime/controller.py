"""The loop of rank 0 (controller): embedding, draft module, final norm + LM head, verification.

SPD uses engineer B's transport-agnostic ``SPDController``; this module only moves its messages and the
stages' hidden states over torch.distributed and stamps trace records. AR through the pipeline is a plain
loop here (one token traverses every stage, then the next token starts).

Per SPD cycle on rank 0: build the control message, broadcast it, run the draft forward (it overlaps the
stage forwards, which run in other processes or threads), receive what the active stages collected (the
last stage first, launching the LM head on its output at once), then verify and book-keep (``end_cycle``).

With speculative control (``--speculative-control``) the next cycle's GO goes out right after the draft
forward, before this cycle's outputs are verified: the stages start the next cycle as soon as they finish
this one, and rank 0's receive, head and verify leave the critical path. When the verify rejects (or the
generation ends), the stages have already run that GO's cycle on tokens that no longer follow: rank 0
receives its outputs, drops them (a *wasted* cycle, recorded as such) and only then sends the DISCARD (or
END). Each reject so costs n cycles instead of n-1; K, as the controller counts it, still obeys
K = N + n - 2 + (n-1)R, and the wasted cycles are counted apart (W). Wire messages and trace records carry
the wall-clock cycle index, K + W so far.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from ..model import Transformer
from ..spd_controller import (ControlKind, ControlMessage, CycleOutputs, PipelinePlan, PrefillOutputs,
                              SPDController, StageOutput)
from ..verify import SamplingConfig, Verifier
from .comm import Comm, Op, Wire
from .launch import Watchdog
from .stage import prefill_needs_launch_signal, step_needs_launch_signal
from .tracing import Recorder


@dataclass
class PromptResult:
    """One generation as rank 0 saw it (times in this rank's clock, converted by the writer)."""

    prompt: int
    tokens: list[int]
    cycles: int  # K (SPD), decode steps (AR methods)
    wasted_cycles: int = 0  # W: speculative cycles dropped after a reject or at the end (speculative control)
    rejects: int = 0
    refill_rejects: int = 0  # R
    accepts: list[bool] = field(default_factory=list)
    stop_reason: str = ""
    t_start_ns: int = 0  # before prefill
    t_first_ns: int = 0  # prefill token committed
    t_end_ns: int = 0  # last token committed


class ControllerRank:
    def __init__(self, comm: Comm, plan: PipelinePlan, head: Transformer, rec: Recorder, watchdog: Watchdog,
                 sampling: SamplingConfig, stage_steps_graphed: bool = False, speculative: bool = False) -> None:
        self.comm, self.plan, self.head, self.rec, self.wd = comm, plan, head, rec, watchdog
        self.speculative = speculative
        # stage 1 runs its one-token steps as CUDA graphs (else an eager AR-pipeline step waits for its launch)
        self.step_launch_signal = step_needs_launch_signal(comm, plan, stage_steps_graphed)
        self.n = plan.n
        self.sampling = sampling
        self.d = head.config.hidden_size
        self.device, self.dtype = head.device, head.dtype

    # -- transport ---------------------------------------------------------------------------------
    def _broadcast(self, op: Op, prompt: int, msg: ControlMessage, **extra) -> None:
        t0 = self.rec.now()
        self.comm.broadcast(Wire(op, prompt, msg), self.n)
        self.rec.add("ctrl_send", t0, self.rec.now(), op=op.name, kind=msg.kind.name, **extra)

    def _recv_collect(self, s: int, tokens: int) -> torch.Tensor:
        """What stage s sends rank 0: its collected hidden states, ``[k, 1, tokens, d]``."""
        k = len(self.plan.stage_collect(s))
        # A fresh buffer every time: the controller keeps these rows (a completed token's anchors are read by
        # the draft cycles later), so a reused buffer would hand it the next cycle's values.
        buf = torch.empty(k, 1, tokens, self.d, dtype=self.dtype, device=self.device)
        link = f"{s + 1}->0"
        t0 = self.rec.now()
        self.comm.recv(buf, s + 1)
        self.rec.add("recv", t0, self.rec.now(), peer=s + 1, link=link, seq=self.rec.next_seq(link),
                     bytes=buf.numel() * buf.element_size())
        return buf

    def _prefill(self, prompt: int, ids: list[int]) -> dict[int, torch.Tensor]:
        """Prompt through every stage; returns {hidden index: [1, P, d]} of everything the stages collect."""
        P = len(ids)
        self._broadcast(Op.PREFILL, prompt, ControlMessage(ControlKind.GO, 0, position=P))
        self.comm.send_ints(torch.tensor(ids, dtype=torch.int64), 1)
        if prefill_needs_launch_signal(self.comm, self.plan):
            self.comm.recv_ints(1, 1, "stage 1's prefill launch")
        hidden = {}
        for s in range(self.n):
            if self.plan.stage_collect(s):
                rows = self._recv_collect(s, P)
                for j, i in enumerate(self.plan.stage_collect(s)):
                    hidden[i] = rows[j].clone()
        return hidden

    def shutdown(self) -> None:
        self.comm.broadcast(Wire(Op.SHUTDOWN, 0, ControlMessage(ControlKind.STOP, 0)), self.n)
        self.comm.flush()

    # -- SPD -----------------------------------------------------------------------------------------
    def _receive_cycle(self, ctrl: SPDController | None, msg: ControlMessage) -> CycleOutputs:
        """What the stages active under ``msg`` collected this cycle. The last stage first: when every stage
        is busy its output is the finished token's final hidden state, and the head (the bulk of verify) is
        launched on it while earlier stages' anchors are still in transit (stages send to rank 0 before they
        send downstream). ``ctrl`` None: a wasted cycle, received only to be dropped."""
        outs, final_logits = [], None
        for s in reversed(range(len(msg.inflight))):
            collect = self.plan.stage_collect(s)
            if collect:
                rows = self._recv_collect(s, 1)
                outs.append(StageOutput(s, msg.inflight[s], {i: rows[j] for j, i in enumerate(collect)}))
                if s == self.n - 1 and ctrl is not None:
                    t0 = self.rec.now()
                    final_logits = ctrl.final_logits(rows[collect.index(self.plan.num_layers)])
                    self.rec.add("head", t0, self.rec.now())
        return CycleOutputs(outs[::-1], final_logits)

    def run_spd(self, ctrl: SPDController, prompt: int, ids: list[int], max_new_tokens: int,
                eos: tuple[int, ...]) -> PromptResult:
        rec = self.rec
        rec.prompt, rec.cycle = prompt, 0
        t_start = time.perf_counter_ns()
        req = ctrl.start(ids, max_new_tokens, eos)
        hidden = self._prefill(prompt, list(req.tokens))
        t0 = rec.now()
        ctrl.finish_prefill(PrefillOutputs(hidden))
        rec.add("verify", t0, rec.now(), what="first_token")
        t_first = time.perf_counter_ns()
        ahead: ControlMessage | None = None  # speculative control: the GO already sent for the coming cycle
        wasted = 0
        t_last = t_first  # when the last token was committed: the decode phase ends there (output.py)

        def wall(m: ControlMessage) -> ControlMessage:  # the controller's cycle number -> the wall-clock one
            return replace(m, cycle=m.cycle + wasted)

        while True:
            c0 = time.perf_counter_ns()
            msg = ctrl.begin_cycle()
            if ahead is not None and msg != ahead:
                # rejected (or over): the stages are running ahead's cycle on tokens that no longer follow
                rec.cycle = ahead.cycle + wasted
                self._receive_cycle(None, ahead)
                c1 = time.perf_counter_ns()
                rec.cycles.append({"prompt": prompt, "cycle": rec.cycle, "control": ahead.kind.name,
                                   "in_flight": len(ahead.inflight), "event": "wasted", "committed": [],
                                   "new_token": -1, "t0_ns": c0, "t1_ns": c1})
                wasted += 1
                c0, ahead = c1, None
            rec.cycle = msg.cycle + wasted
            if msg.kind is ControlKind.STOP:
                self._broadcast(Op.END, prompt, wall(msg))
                break
            if ahead is None:
                self._broadcast(Op.CYCLE, prompt, wall(msg))
            t0 = rec.now()
            ctrl.run_draft()
            rec.add("draft", t0, rec.now())
            ahead = ctrl.speculate_next() if self.speculative else None
            if ahead is not None:
                rec.cycle += 1  # the record belongs to the cycle it starts
                self._broadcast(Op.CYCLE, prompt, wall(ahead), speculative=True)
                rec.cycle -= 1
            outs = self._receive_cycle(ctrl, msg)
            t0 = rec.now()
            record = ctrl.end_cycle(outs)
            c1 = t_last = time.perf_counter_ns()
            rec.add("verify", t0, c1, event=record.event)
            rec.cycles.append({"prompt": prompt, "cycle": rec.cycle, "control": msg.kind.name,
                               "in_flight": len(msg.inflight), "event": record.event,
                               "committed": list(record.committed), "new_token": record.new_token,
                               "t0_ns": c0, "t1_ns": c1})
            self.wd.tick()
        res = ctrl.result()
        return PromptResult(prompt, list(res.tokens), res.cycles, wasted, res.rejects, res.refill_rejects,
                            list(res.accepts), res.stop_reason, t_start, t_first, t_last)

    # -- AR through the pipeline ---------------------------------------------------------------------
    def run_ar_pipeline(self, prompt: int, ids: list[int], max_new_tokens: int, eos: tuple[int, ...],
                        record_cycles: bool = True) -> PromptResult:
        """One token at a time through all n stages (no speculation). ``record_cycles=False`` for the
        untraced reference pass of the replay draft."""
        rec = self.rec
        rec.prompt, rec.cycle = prompt, 0
        verifier = Verifier(self.sampling)
        L = self.plan.num_layers
        t_start = time.perf_counter_ns()
        hidden = self._prefill(prompt, ids)
        tok = verifier.first_token(self.head.final_logits(hidden[L][:, -1:])[0, 0])
        tokens = [tok]
        t_first = time.perf_counter_ns()
        pos, step = len(ids), 0
        eos_set = set(eos)
        while len(tokens) < max_new_tokens and tok not in eos_set:
            step += 1
            rec.cycle = step
            c0 = time.perf_counter_ns()
            self._broadcast(Op.AR_STEP, prompt, ControlMessage(ControlKind.GO, step, tok, pos, -1, (pos,)))
            if self.step_launch_signal:
                self.comm.recv_ints(1, 1, "stage 1's step launch")
            for s in range(self.n):  # anchors too when the plan has them (replay's reference pass)
                if self.plan.stage_collect(s):
                    rows = self._recv_collect(s, 1)
            final = rows[-1]  # L is the last index the last stage collects
            t0 = rec.now()
            with torch.inference_mode():
                tok = verifier.first_token(self.head.final_logits(final)[0, 0])
            c1 = time.perf_counter_ns()
            rec.add("verify", t0, c1, event="ar")
            tokens.append(tok)
            pos += 1
            if record_cycles:
                rec.cycles.append({"prompt": prompt, "cycle": step, "control": "AR_STEP", "in_flight": 1,
                                   "event": "ar", "committed": [tok], "new_token": tok, "t0_ns": c0, "t1_ns": c1})
            self.wd.tick()
        self._broadcast(Op.END, prompt, ControlMessage(ControlKind.STOP, step + 1))
        stop = "eos" if tok in eos_set else "max_new_tokens"
        return PromptResult(prompt, tokens, step, stop_reason=stop, t_start_ns=t_start, t_first_ns=t_first,
                            t_end_ns=time.perf_counter_ns())
