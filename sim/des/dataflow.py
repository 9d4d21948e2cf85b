"""The full dataflow model of a pipeline (SPD, PPSD, AR through n stages) in SimPy.

Entities (SPEC.md 1.3), one process per rank:

* :class:`Controller` (rank 0, with the draft module): per cycle it does the control work, sends
  GO to the stages that hold a token, runs the draft forward on its own device *concurrently* with
  the stage forwards (SPD) or after them (PPSD), waits for the hidden states the stages send back
  (the finished token's for verification, the others' as the draft's features and the end-of-cycle
  sync), verifies, and on a reject flushes (pipeline = [correction], KV caches cropped).
* :class:`StageWorker` (ranks 1..n): wait for GO and for the input hidden state from the previous
  stage (sent in the previous cycle; for AR through the pipeline, in this cycle), forward on its
  device, send the output to the next stage and to the controller.

Devices are ``simpy.Resource`` objects when several ranks share one (their work queues); a device
used by one rank is never contended, so it is not modelled as a resource (same result, fewer
events). Links are latencies (``plan.next_hop`` / ``plan.report_hop``, drawn per message): the
messages are a few KB, latency-bound. There is no global barrier: the cycle time is whatever the
dependencies above make it.
"""
from __future__ import annotations

import numpy as np
import simpy

from .acceptance import AcceptanceSource
from .fast import RawRun
from .latency import StreamSet
from .plan import PipelinePlan
from .result import ACCEPT, NO_VERIFY, REJECT, CycleRecords
from .trace import CONTROLLER_TID, CYCLE_TID, SEND_TID_BASE, TraceRecorder


class _Shared:
    """State the rank processes of one run share (the wiring between them)."""

    def __init__(self, plan: PipelinePlan, streams: StreamSet, trace: TraceRecorder | None):
        self.env = simpy.Environment()
        self.plan = plan
        self.streams = streams
        self.trace = trace
        self.lag = plan.method != "ar_pipeline"  # SPD/PPSD: a stage's input was produced in the previous cycle
        ranks = [plan.controller_device, *plan.stage_devices]
        shared = {d for d in ranks if ranks.count(d) > 1}
        self.resources = {d: simpy.Resource(self.env, capacity=1) for d in sorted(shared)}
        self.busy_ms: dict[str, float] = {}
        self.pending = 0  # stage messages the controller still waits for this cycle
        self.all_in: simpy.Event | None = None

    def resource(self, device: int) -> simpy.Resource | None:
        return self.resources.get(device)

    def on_report(self, _ev) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.all_in.succeed()


class StageWorker:
    """Rank s (1-based): one pipeline stage on its device."""

    def __init__(self, sh: _Shared, s: int):
        self.sh, self.s = sh, s
        self.wake = sh.env.event()  # GO (SPD/PPSD) or the input message (AR pipeline)
        self.inbox: simpy.Event | None = None  # input hidden state from stage s-1 (SPD/PPSD)
        self.next: StageWorker | None = None

    def run(self):
        sh, s, env = self.sh, self.s, self.sh.env
        plan = sh.plan
        fwd = sh.streams.get(f"stage{s}.forward", plan.stage[s - 1])
        last = s == plan.n
        report = sh.streams.get(f"stage{s}.report", plan.report_hop[s - 1])
        nxt = None if last else sh.streams.get(f"stage{s}.send", plan.next_hop[s - 1])
        # One message can serve both the next stage and the controller when the two links are the same constant.
        one_msg = nxt is not None and report.constant and nxt.constant and report.value == nxt.value
        res = sh.resource(plan.stage_devices[s - 1])
        trace = sh.trace
        name = f"stage {s}"
        busy = 0.0
        if trace:
            trace.thread(s, f"rank {s}: stage {s} ({plan.split[s - 1]} layers, device {plan.stage_devices[s - 1]})")
            trace.thread(SEND_TID_BASE + s, f"rank {s}: sends")
        while True:
            cycle = yield self.wake
            self.wake = env.event()
            inp = self.inbox
            if sh.lag and inp is not None:
                yield inp  # returns at once if the hidden state has already arrived
            if res is not None:
                req = res.request()
                yield req
            f = fwd.next()
            t = env.now
            yield env.timeout(f)
            if res is not None:
                res.release(req)
            busy += f
            sh.busy_ms[name] = busy
            if trace:
                trace.span(s, "forward", t, f, cycle=cycle)
            if not sh.lag:  # AR pipeline: the token walks on; only the last stage reports
                if last:
                    self._send_report(report.next(), cycle)
                else:
                    self._send_next(nxt.next(), cycle)
                continue
            if one_msg:
                ev = self._send_report(report.next(), cycle, traced=False)
                self.next.inbox = ev
                if trace:
                    trace.span(SEND_TID_BASE + s, f"send -> stage {s + 1} + rank 0", env.now, report.value, cycle=cycle)
            else:
                self._send_report(report.next(), cycle)
                if nxt is not None:
                    h = nxt.next()
                    self.next.inbox = env.timeout(h)
                    if trace:
                        trace.span(SEND_TID_BASE + s, f"send -> stage {s + 1}", env.now, h, cycle=cycle)

    def _send_report(self, h: float, cycle: int, traced: bool = True) -> simpy.Event:
        sh = self.sh
        ev = sh.env.timeout(h)
        ev.callbacks.append(sh.on_report)
        if traced and sh.trace:
            sh.trace.span(SEND_TID_BASE + self.s, "send -> rank 0", sh.env.now, h, cycle=cycle)
        return ev

    def _send_next(self, h: float, cycle: int) -> None:
        sh, nxt = self.sh, self.next
        if sh.trace:
            sh.trace.span(SEND_TID_BASE + self.s, f"send -> stage {self.s + 1}", sh.env.now, h, cycle=cycle)
        if h > 0:
            sh.env.timeout(h).callbacks.append(lambda _ev, w=nxt, c=cycle: w.wake.succeed(c))
        else:
            nxt.wake.succeed(cycle)


class Controller:
    """Rank 0: control, draft module, verify, accept/reject, flush."""

    def __init__(self, sh: _Shared, stages: list[StageWorker], tokens: int, acc: AcceptanceSource | None):
        self.sh, self.stages, self.tokens, self.acc = sh, stages, tokens, acc
        self.rows: list[tuple] = []
        self.rejects = 0
        self.refills = 0

    def _work(self, res, d: float, label: str, cycle: int):
        """Draft or verify on the controller's device, queueing when a stage shares it."""
        req = res.request()
        yield req
        t = self.sh.env.now
        yield self.sh.env.timeout(d)
        res.release(req)
        if self.sh.trace:
            self.sh.trace.span(CONTROLLER_TID, label, t, d, cycle=cycle)

    def run(self):
        sh, env, plan = self.sh, self.sh.env, self.sh.plan
        n, tokens, acc, trace = plan.n, self.tokens, self.acc, sh.trace
        c = plan.costs
        ctrl, chop = sh.streams.get("control", c.control), sh.streams.get("control_hop", c.control_hop)
        draft, verify = sh.streams.get("draft", plan.draft), sh.streams.get("verify", c.verify)
        bookkeeping, flush = sh.streams.get("bookkeeping", c.bookkeeping), sh.streams.get("flush", c.flush)
        res = sh.resource(plan.controller_device)
        spd, ppsd = plan.method == "spd", plan.method == "ppsd"
        stages = self.stages
        rows = self.rows
        busy_draft = busy_verify = 0.0
        if trace:
            trace.thread(CONTROLLER_TID, f"rank 0: controller + draft (device {plan.controller_device})")
            trace.thread(CYCLE_TID, "cycles")
        ell, committed, cycle = 1, 0, 0
        verified = False  # has any token been verified yet (fill vs refill)
        while committed < tokens:
            cycle += 1
            t0 = env.now
            if trace:
                trace.cycle(cycle)
            x = ctrl.next()
            if x > 0:
                yield env.timeout(x)
            if trace:
                trace.span(CONTROLLER_TID, "control (GO)", t0, x, cycle=cycle, in_flight=ell)
            # GO to every stage that holds a token (AR pipeline: stage 1; the token walks on from there)
            waking = stages[:ell] if sh.lag else stages[:1]
            sh.pending = len(waking) if sh.lag else 1
            sh.all_in = env.event()
            h = chop.next()
            if h > 0:
                env.timeout(h).callbacks.append(lambda _ev, ws=waking, k=cycle: [w.wake.succeed(k) for w in ws])
            else:
                for w in waking:
                    w.wake.succeed(cycle)
            draft_ev = None
            if spd:  # the PDM only needs features from before this cycle: it runs alongside the stages
                d = draft.next()
                busy_draft += d
                if res is not None:
                    draft_ev = env.process(self._work(res, d, "draft (PDM)", cycle))
                else:
                    draft_ev = env.timeout(d)
                    if trace:
                        trace.span(CONTROLLER_TID, "draft (PDM)", env.now, d, cycle=cycle)
            yield sh.all_in
            if draft_ev is not None:
                yield draft_ev
            v = verify.next()
            busy_verify += v
            tv = env.now
            if res is not None:
                yield env.process(self._work(res, v, "verify", cycle))
            else:
                if v > 0:
                    yield env.timeout(v)
                if trace:
                    trace.span(CONTROLLER_TID, "verify", tv, v, cycle=cycle)
            if ppsd:  # PPSD drafts after the pipeline step, serially
                d = draft.next()
                busy_draft += d
                td = env.now
                if res is not None:
                    yield env.process(self._work(res, d, "draft", cycle))
                else:
                    if d > 0:
                        yield env.timeout(d)
                    if trace:
                        trace.span(CONTROLLER_TID, "draft", td, d, cycle=cycle)
            start_ell, outcome, got = ell, NO_VERIFY, 0
            phase = "steady" if (ell == n or not sh.lag) else ("refill" if verified else "fill")
            if not sh.lag:
                got = 1
            elif ell == n:  # the oldest token passed every stage: its logits verify the next draft
                got, verified = 1, True
                outcome = ACCEPT if acc.next_outcome() else REJECT
                if outcome == REJECT:
                    self.rejects += 1
            else:
                ell += 1
            committed += got
            if trace and got and sh.lag:
                trace.instant(CONTROLLER_TID, "accept" if outcome == ACCEPT else "reject", env.now, cycle=cycle)
            if outcome == REJECT and committed < tokens:  # flush: pipeline = [correction], crop KV caches
                ell = 1
                self.refills += 1
                fl = flush.next()
                if trace:
                    trace.instant(CONTROLLER_TID, "flush", env.now, cycle=cycle, crop_to=committed + 1)
                if fl > 0:
                    tf = env.now
                    yield env.timeout(fl)
                    if trace:
                        trace.span(CONTROLLER_TID, "flush (DISCARD + KV crop)", tf, fl, cycle=cycle)
            b = bookkeeping.next()
            if b > 0:
                tb = env.now
                yield env.timeout(b)
                if trace:
                    trace.span(CONTROLLER_TID, "bookkeeping + sync", tb, b, cycle=cycle)
            if trace:
                trace.span(CYCLE_TID, f"cycle {cycle}", t0, env.now - t0, in_flight=start_ell, outcome=outcome, phase=phase)
            rows.append((t0, env.now, start_ell, outcome, got))
        sh.busy_ms["draft"] = busy_draft
        sh.busy_ms["verify"] = busy_verify


def run_pipeline(plan: PipelinePlan, tokens: int, streams: StreamSet, acc: AcceptanceSource | None,
                 trace: TraceRecorder | None = None) -> RawRun:
    sh = _Shared(plan, streams, trace)
    stages = [StageWorker(sh, s) for s in range(1, plan.n + 1)]
    for a, b in zip(stages, stages[1:]):
        a.next = b
    for st in stages:
        sh.busy_ms[f"stage {st.s}"] = 0.0
        sh.env.process(st.run())
    ctl = Controller(sh, stages, tokens, acc)
    sh.env.run(until=sh.env.process(ctl.run()))
    cols = list(zip(*ctl.rows)) if ctl.rows else [(), (), (), (), ()]
    recs = CycleRecords(np.array(cols[0], dtype=float), np.array(cols[1], dtype=float), np.array(cols[2], dtype=np.int64),
                        np.array(cols[3], dtype=np.int64), np.array(cols[4], dtype=np.int64))
    return RawRun(recs, dict(sh.busy_ms), ctl.rejects, ctl.refills)
