"""The dataflow model of SPD with speculative control (``spd run --speculative-control``) in SimPy.

Same ranks and costs as ``dataflow.py``; what changes is when GO leaves rank 0. There the controller sends
the GO of cycle c+1 after it verified cycle c. Here it sends it right after the draft forward of cycle c,
assuming the cycle ends in a fill or an accept, and verifies cycle c while the stages already run c+1:

* a stage runs cycle c+1 once its GO has arrived and its own forward of cycle c has ended (a device runs one
  forward at a time), reading the hidden state stage s-1 produced in cycle c;
* GOs can run ahead of the stages, so each cycle has its own GO event and its own count of reports;
* on a reject the stages have already run the GO that followed on tokens that no longer follow: rank 0
  waits for that *wasted* cycle's reports, then sends the DISCARD (pipeline = [correction]) as the next
  cycle. A reject costs n cycles instead of n-1 (closed form: ``sim.closed_form.spd_speculative_*``).

The run ends at the last commit; the trailing wasted cycle of a real generation is not decode time.
"""
from __future__ import annotations

import simpy

from .acceptance import AcceptanceSource
from . import dataflow
from .dataflow import Controller, StageWorker, _Shared
from .fast import RawRun
from .latency import StreamSet
from .plan import PipelinePlan
from .result import ACCEPT, NO_VERIFY, REJECT
from .trace import CONTROLLER_TID, CYCLE_TID, TraceRecorder


class _SpecShared(_Shared):
    """Per-cycle GO events, in-flight counts and report counts (a GO may precede the previous cycle's end)."""

    def __init__(self, plan: PipelinePlan, streams: StreamSet, trace: TraceRecorder | None):
        super().__init__(plan, streams, trace)
        self.go: dict[int, simpy.Event] = {}
        self.go_seen: dict[int, int] = {}  # stages past each GO (its event is dropped once all n are)
        self.ell_of: dict[int, int] = {}
        self.left: dict[int, int] = {}
        self.done: dict[int, simpy.Event] = {}
        self.final: dict[int, simpy.Event] = {}  # the last stage's output, in a cycle that verifies a token

    def go_event(self, cycle: int) -> simpy.Event:
        if cycle not in self.go:
            self.go[cycle] = self.env.event()
        return self.go[cycle]

    def passed(self, cycle: int) -> None:
        self.go_seen[cycle] = self.go_seen.get(cycle, 0) + 1
        if self.go_seen[cycle] == self.plan.n:
            del self.go[cycle], self.go_seen[cycle], self.ell_of[cycle]

    def report(self, cycle: int) -> None:
        self.left[cycle] -= 1
        if self.left[cycle] == 0:
            self.done[cycle].succeed()

    def report_final(self, cycle: int) -> None:
        self.final[cycle].succeed()


class SpeculativeStage(StageWorker):
    """Stage s: every cycle, wait for its GO; run it if it holds a token (s <= in-flight count)."""

    def run(self):
        self._setup()
        return self._run_speculative()

    def _run_speculative(self):
        sh, s, env = self.sh, self.s, self.sh.env
        fwd, report, send, res, trace = self.fwd, self.report, self.send, self.res, sh.trace
        free_at, cycle = 0.0, 0
        while True:
            cycle += 1
            ev = sh.go_event(cycle)
            if ev.callbacks is not None:
                yield ev
            ell = sh.ell_of[cycle]
            sh.passed(cycle)
            if s > ell:
                continue  # no token for this stage this cycle (filling, or flushed)
            if free_at > env.now:
                yield env.timeout(free_at - env.now)  # its forward of the previous cycle is still running
            if self.start is not None:  # control delivery to its thread or process, its input's receive
                w = self.start.next()
                if w > 0:
                    yield env.timeout(w)
            inp = self.inbox[(cycle - 1) & 1]
            if inp is not None and inp.callbacks is not None:
                yield inp
            f = fwd.next()
            self.busy_ms += f
            if res is not None:
                yield env.process(self._forward(f, cycle))
                t, f_end = env.now - f, 0.0
            else:
                t, f_end = env.now, f
                if trace:
                    trace.span(s, "forward", t, f, cycle=cycle)
            free_at = t + f
            msg = env.timeout(f_end + report.next())
            if s == sh.plan.n:  # runs only in a cycle that verifies: the final output
                msg.callbacks.append(lambda _ev, c=cycle: sh.report_final(c))
            elif sh.reports[s - 1]:  # a stage holding no anchor layer sends rank 0 nothing
                msg.callbacks.append(lambda _ev, c=cycle: sh.report(c))
            if send is not None:
                self.next.inbox[cycle & 1] = env.timeout(f_end + send.next())


class SpeculativeController(Controller):
    """Rank 0: GO of the next cycle after the draft forward, verify after it; a wasted cycle after a reject."""

    def _issue(self, cycle: int, ell: int, hop: float) -> None:
        sh = self.sh
        verifying = ell == sh.plan.n
        sh.ell_of[cycle], sh.done[cycle] = ell, sh.env.event()
        sh.left[cycle] = sum(sh.reports[:ell]) - int(verifying)
        if sh.left[cycle] == 0:
            sh.done[cycle].succeed()
        if verifying:
            sh.final[cycle] = sh.env.event()
        ev = sh.go_event(cycle)
        if hop > 0:
            sh.env.timeout(hop).callbacks.append(lambda _e, ev=ev: ev.succeed())
        else:
            ev.succeed()

    def _busy(self, res, d: float, label: str, cycle: int):
        """Rank 0's own work; ``res``: the device queue it goes through (draft and verify, when a stage shares
        the device), None for host work (control, bookkeeping, flush), as in the default model."""
        if res is not None:
            yield self.sh.env.process(self._work(res, d, label, cycle))
        else:
            if self.sh.trace:
                self.sh.trace.span(CONTROLLER_TID, label, self.sh.env.now, d, cycle=cycle)
            if d > 0:
                yield self.sh.env.timeout(d)

    def _final(self, cycle: int):
        """Wait for the last stage's output of ``cycle`` (a cycle that verifies), then forget it."""
        ev = self.sh.final.get(cycle)
        if ev is not None:
            if ev.callbacks is not None:
                yield ev
            del self.sh.final[cycle]

    def _reports(self, cycle: int):
        """Wait until every reporting stage that ran ``cycle`` has reported (then forget its count)."""
        yield from self._final(cycle)
        done = self.sh.done[cycle]
        if done.callbacks is not None:
            yield done
        del self.sh.done[cycle], self.sh.left[cycle]

    def run(self):
        sh, env, plan = self.sh, self.sh.env, self.sh.plan
        n, tokens, acc, trace = plan.n, self.tokens, self.acc, sh.trace
        ctrl, chop, draft, verify, fill_verify, bookkeeping, flush, head = self._streams()
        res = sh.resource(plan.controller_device)
        rows = self.rows
        busy_draft = busy_verify = 0.0
        ell, committed, cycle, verified = 1, 0, 1, False
        yield from self._busy(None, ctrl.next(), "control (GO)", cycle)
        self._issue(cycle, ell, chop.next())
        t0 = 0.0
        while committed < tokens:
            d = draft.next()  # features from before this cycle: runs alongside the stages
            busy_draft += d
            yield from self._busy(res, d, "draft (PDM)", cycle)
            ell_next = ell if ell == n else ell + 1  # assuming a fill or an accept
            yield from self._busy(None, ctrl.next(), "control (speculative GO)", cycle + 1)
            self._issue(cycle + 1, ell_next, chop.next())
            v = (fill_verify if fill_verify is not None and ell < n else verify).next()
            busy_verify += v
            if ell == n and head is not None:  # the head on the last stage's output, before the others come in
                yield from self._final(cycle)
                h = min(head.next(), v)
                yield from self._busy(res, h, "head", cycle)
                v -= h
            yield from self._reports(cycle)
            yield from self._busy(res, v, "verify", cycle)
            outcome, got = NO_VERIFY, 0
            if ell == n:  # the oldest token passed every stage: its logits verify the next draft
                got, verified = 1, True
                outcome = ACCEPT if acc.next_outcome() else REJECT
                self.rejects += outcome == REJECT
            committed += got
            yield from self._busy(None, bookkeeping.next(), "bookkeeping + sync", cycle)
            phase = "steady" if ell == n else ("refill" if verified else "fill")
            if trace:
                trace.span(CYCLE_TID, f"cycle {cycle}", t0, env.now - t0, in_flight=ell, outcome=outcome, phase=phase)
            rows.append((t0, env.now, ell, outcome, got))
            t0 = env.now
            if committed >= tokens:
                break
            if outcome != REJECT:
                cycle, ell = cycle + 1, ell_next
                continue
            # the GO sent ahead ran on tokens that no longer follow: take its reports, then DISCARD
            yield from self._reports(cycle + 1)
            if trace:
                trace.span(CYCLE_TID, f"cycle {cycle + 1} (wasted)", t0, env.now - t0, in_flight=ell_next,
                           outcome=NO_VERIFY, phase="wasted")
            rows.append((t0, env.now, ell_next, NO_VERIFY, 0))
            t0 = env.now
            self.refills += 1
            yield from self._busy(None, flush.next() + ctrl.next(), "flush + control (DISCARD)", cycle + 2)
            cycle, ell = cycle + 2, 1
            self._issue(cycle, ell, chop.next())
        sh.busy_ms["draft"] = busy_draft
        sh.busy_ms["verify"] = busy_verify


def run_pipeline(plan: PipelinePlan, tokens: int, streams: StreamSet, acc: AcceptanceSource,
                 trace: TraceRecorder | None = None) -> RawRun:
    return dataflow.run_pipeline(plan, tokens, streams, acc, trace,
                                 entities=(_SpecShared, SpeculativeStage, SpeculativeController))
