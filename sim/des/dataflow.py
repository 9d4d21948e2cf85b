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

Two shortcuts keep it near 15 us per SPD cycle at n=8 without changing any result: a stage on a device
of its own schedules its outgoing messages at (forward start + forward + hop) at once, since nothing
can observe or delay that device in between; and the controller's serial tail (verify, flush,
bookkeeping, the next cycle's control work) is one wait, since nothing interleaves with it. Where a
device is shared, forwards, draft and verify go through the device's queue instead.
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
        self.pending = 0  # stage messages the controller still waits for this cycle (besides the last stage's)
        self.all_in: simpy.Event | None = None
        # SPD/PPSD, a cycle that verifies a token: the last stage's output, on which rank 0 launches the head
        self.final_in: simpy.Event | None = None
        self.reports = plan.reports  # which stages send their output to rank 0
        self.next_go = self.env.event()  # GO of the coming cycle, shared by the stages holding a token
        self.ell = 1  # tokens in flight this cycle: stages 1..ell run

    def resource(self, device: int) -> simpy.Resource | None:
        return self.resources.get(device)

    def on_report(self, _ev) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.all_in.succeed()

    def on_final(self, _ev) -> None:
        self.final_in.succeed()


class StageWorker:
    """Rank s (1-based): one pipeline stage on its device.

    SPD/PPSD: a stage holding a token waits for the shared GO of the next cycle; after a flush it has
    no token and sleeps on its own ``wake`` until the refill reaches it (so idle stages cost nothing).
    AR pipeline: woken by the input message itself.
    """

    def __init__(self, sh: _Shared, s: int):
        self.sh, self.s = sh, s
        self.wake = sh.env.event()
        # input hidden states from stage s-1 (SPD/PPSD), by cycle parity: the message of cycle c-1 is
        # read in cycle c while stage s-1 may already be sending the one of cycle c
        self.inbox: list[simpy.Event | None] = [None, None]
        self.next: StageWorker | None = None
        self.busy_ms = 0.0

    def run(self):
        self._setup()
        return self._run_pipelined() if self.sh.lag else self._run_walk()

    def _setup(self) -> None:
        """This stage's time streams, device queue and trace threads."""
        sh, s, plan = self.sh, self.s, self.sh.plan
        self.fwd = sh.streams.get(f"stage{s}.forward", plan.stage[s - 1])
        self.report = sh.streams.get(f"stage{s}.report", plan.report_hop[s - 1])
        self.send = None if s == plan.n else sh.streams.get(f"stage{s}.send", plan.next_hop[s - 1])
        wait = plan.start[s - 1] if plan.start else None
        self.start = sh.streams.get(f"stage{s}.start", wait) if wait is not None and wait.terms else None
        self.res = sh.resource(plan.stage_devices[s - 1])
        self.send_tid = SEND_TID_BASE + s
        if sh.trace:
            sh.trace.thread(s, f"rank {s}: stage {s} ({plan.split[s - 1]} layers, device {plan.stage_devices[s - 1]})")
            sh.trace.thread(self.send_tid, f"rank {s}: sends")

    def _forward(self, f: float, cycle: int):
        """Forward on a shared device: queue for it (generator; the messages leave when it ends)."""
        req = self.res.request()
        yield req
        t = self.sh.env.now
        yield self.sh.env.timeout(f)
        self.res.release(req)
        if self.sh.trace:
            self.sh.trace.span(self.s, "forward", t, f, cycle=cycle)

    def _run_pipelined(self):
        """SPD / PPSD: every cycle, forward the token at depth s-1, send it on and report to rank 0."""
        sh, s, env = self.sh, self.s, self.sh.env
        fwd, report, send, res, trace = self.fwd, self.report, self.send, self.res, sh.trace
        # One message serves the next stage and the controller when both links are the same constant.
        one_msg = send is not None and report.constant and send.constant and report.value == send.value
        f_const = fwd.value if fwd.constant else None
        h_const = report.value if report.constant else None
        # the last stage runs only in cycles that verify a token: its output is the final one; a stage holding no
        # anchor layer sends rank 0 nothing
        on_report = sh.on_final if s == sh.plan.n else sh.on_report if sh.reports[s - 1] else None
        timeout, inbox = env.timeout, self.inbox
        ev = sh.next_go if s == 1 else self.wake
        free_at = 0.0  # when its last forward ends (a stage that reports is always done by the next GO; one that
        # sends rank 0 nothing may not be)
        while True:
            cycle = yield ev
            if s > sh.ell:  # flushed: no token for this stage until the refill reaches it
                self.wake = env.event()
                cycle = yield self.wake
            if free_at > env.now:
                yield timeout(free_at - env.now)
            if self.start is not None:  # control delivery to its thread or process, its input's receive
                w = self.start.next()
                if w > 0:
                    yield env.timeout(w)
            inp = inbox[(cycle - 1) & 1]
            if inp is not None and inp.callbacks is not None:
                yield inp  # the input hidden state is still on the wire
            f = f_const if f_const is not None else fwd.next()
            self.busy_ms += f
            t = env.now
            if res is not None:  # a device shared with other ranks: queue for it; messages leave after it
                yield env.process(self._forward(f, cycle))
                f_end = 0.0
                t = env.now - f
            else:  # nobody else uses this device: the messages can be scheduled from the forward's start
                f_end = f
                if trace:
                    trace.span(s, "forward", t, f, cycle=cycle)
            free_at = t + f
            h = h_const if h_const is not None else report.next()
            msg = timeout(f_end + h)
            if on_report is not None:
                msg.callbacks.append(on_report)
            if one_msg:
                self.next.inbox[cycle & 1] = msg
                if trace:
                    to = " + rank 0" if on_report is not None else ""
                    trace.span(self.send_tid, f"send -> stage {s + 1}{to}", t + f, h, cycle=cycle)
            else:
                if trace and on_report is not None:
                    trace.span(self.send_tid, "send -> rank 0", t + f, h, cycle=cycle)
                if send is not None:
                    hn = send.next()
                    self.next.inbox[cycle & 1] = timeout(f_end + hn)
                    if trace:
                        trace.span(self.send_tid, f"send -> stage {s + 1}", t + f, hn, cycle=cycle)
            ev = sh.next_go

    def _run_walk(self):
        """AR through the pipeline: woken by the token's arrival, forward it, pass it on (last: to rank 0)."""
        sh, s, env = self.sh, self.s, self.sh.env
        fwd, trace = self.fwd, sh.trace
        link = self.report if self.send is None else self.send
        while True:
            cycle = yield self.wake
            self.wake = env.event()  # re-arm for the next token
            f = fwd.next()
            self.busy_ms += f
            if self.res is not None:
                yield env.process(self._forward(f, cycle))
            else:
                if trace:
                    trace.span(s, "forward", env.now, f, cycle=cycle)
                yield env.timeout(f)
            h = link.next()
            if trace:
                trace.span(self.send_tid, "send -> rank 0" if self.send is None else f"send -> stage {s + 1}", env.now, h, cycle=cycle)
            if self.send is None:
                env.timeout(h).callbacks.append(sh.on_report)
            elif h > 0:
                env.timeout(h).callbacks.append(lambda _ev, w=self.next, c=cycle: w.wake.succeed(c))
            else:
                self.next.wake.succeed(cycle)


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

    def _streams(self) -> tuple:
        """The controller's cost streams (control, control hop, draft, verify, verify of a cycle in which no
        token finishes or None, bookkeeping, flush) and its trace threads."""
        sh, plan = self.sh, self.sh.plan
        c, get = plan.costs, sh.streams.get
        if sh.trace:
            sh.trace.thread(CONTROLLER_TID, f"rank 0: controller + draft (device {plan.controller_device})")
            sh.trace.thread(CYCLE_TID, "cycles")
        return (get("control", c.control), get("control_hop", c.control_hop), get("draft", plan.draft),
                get("verify", c.verify), get("verify_fill", c.verify_fill) if c.verify_fill is not None else None,
                get("bookkeeping", c.bookkeeping), get("flush", c.flush), get("head", c.head) if c.head.terms else None)

    def run(self):
        sh, env, plan = self.sh, self.sh.env, self.sh.plan
        n, tokens, acc, trace = plan.n, self.tokens, self.acc, sh.trace
        ctrl, chop, draft, verify, fill_verify, bookkeeping, flush, head = self._streams()
        res = sh.resource(plan.controller_device)
        spd, ppsd, lag = plan.method == "spd", plan.method == "ppsd", sh.lag
        stages, rows = self.stages, self.rows
        busy_draft = busy_verify = 0.0
        ell, committed, cycle = 1, 0, 0
        grew = False  # did the pipeline gain a token at the end of the last cycle (wakes stage ell)
        verified = False  # has any token been verified yet (fill vs refill)
        x = ctrl.next()
        if x > 0:
            yield env.timeout(x)
        while committed < tokens:
            # -- here the control work of this cycle (x ms) has just ended: issue GO
            cycle += 1
            t0 = env.now - x
            if trace:
                trace.cycle(cycle)
                trace.span(CONTROLLER_TID, "control (GO)", t0, x, cycle=cycle, in_flight=ell)
            # GO to every stage that holds a token (AR pipeline: stage 1; the token walks on from there); rank 0
            # then waits for the reporting ones (SPD/PPSD: the last one's output apart, in a cycle that verifies)
            verifying = lag and ell == n
            sh.pending = sum(sh.reports[:ell]) - int(verifying) if lag else 1
            sh.all_in = env.event()
            sh.final_in = env.event() if verifying else None
            if sh.pending == 0:
                sh.all_in.succeed()
            if lag:
                waking = [sh.next_go]
                sh.next_go = env.event()
                sh.ell = ell
                if grew:  # the refill (or fill) reaches stage ell: it sleeps on its own event
                    waking.append(stages[ell - 1].wake)
            else:
                waking = [stages[0].wake]
            h = chop.next()
            if h > 0:
                env.timeout(h).callbacks.append(lambda _ev, ws=waking, k=cycle: [w.succeed(k) for w in ws])
            else:
                for w in waking:
                    w.succeed(cycle)
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
            v = (fill_verify if fill_verify is not None and lag and ell < n else verify).next()
            busy_verify += v
            if verifying:  # the head on the last stage's output (after the draft: one thread), then the others
                if sh.final_in.callbacks is not None:
                    yield sh.final_in
                if draft_ev is not None and draft_ev.callbacks is not None:
                    yield draft_ev
                h = min(head.next(), v) if head is not None else 0.0
                if h > 0:
                    if res is not None:
                        yield env.process(self._work(res, h, "head", cycle))
                    else:
                        if trace:
                            trace.span(CONTROLLER_TID, "head", env.now, h, cycle=cycle)
                        yield env.timeout(h)
                    v -= h
            if sh.all_in.callbacks is not None:  # (a processed event needs no yield)
                yield sh.all_in
            if draft_ev is not None and draft_ev.callbacks is not None:
                yield draft_ev
            # -- everything this cycle needs is in: verify, (PPSD: draft), decide, flush, bookkeeping
            tail = 0.0  # serial controller work still to run (scheduled as one wait where nothing can interleave)
            if res is not None:
                yield env.process(self._work(res, v, "verify", cycle))
            else:
                if trace:
                    trace.span(CONTROLLER_TID, "verify", env.now, v, cycle=cycle)
                tail = v
            if ppsd:  # PPSD drafts after the pipeline step, serially
                d = draft.next()
                busy_draft += d
                if res is not None:
                    yield env.process(self._work(res, d, "draft", cycle))
                else:
                    if trace:
                        trace.span(CONTROLLER_TID, "draft", env.now + tail, d, cycle=cycle)
                    tail += d
            start_ell, outcome, got, grew = ell, NO_VERIFY, 0, False
            phase = "steady" if (ell == n or not lag) else ("refill" if verified else "fill")
            if not lag:
                got = 1
            elif ell == n:  # the oldest token passed every stage: its logits verify the next draft
                got, verified = 1, True
                outcome = ACCEPT if acc.next_outcome() else REJECT
                if outcome == REJECT:
                    self.rejects += 1
            else:
                ell += 1
                grew = True
            committed += got
            if trace and got and lag:
                trace.instant(CONTROLLER_TID, "accept" if outcome == ACCEPT else "reject", env.now + tail, cycle=cycle)
            if outcome == REJECT and committed < tokens:  # flush: pipeline = [correction], crop KV caches
                ell = 1
                self.refills += 1
                fl = flush.next()
                if trace:
                    trace.instant(CONTROLLER_TID, "flush", env.now + tail, cycle=cycle, crop_to=committed + 1)
                    if fl > 0:
                        trace.span(CONTROLLER_TID, "flush (DISCARD + KV crop)", env.now + tail, fl, cycle=cycle)
                tail += fl
            b = bookkeeping.next()
            if trace and b > 0:
                trace.span(CONTROLLER_TID, "bookkeeping + sync", env.now + tail, b, cycle=cycle)
            tail += b
            # the next cycle's control work follows at once: wait for both in one go
            x = ctrl.next() if committed < tokens else 0.0
            if plan.costs.credit:  # an uninstrumented run's cycle, shorter by what tracing costs that kind of cycle
                event = "ar" if not lag else {ACCEPT: "accept", REJECT: "reject"}.get(outcome, "fill")
                # at most the work still scheduled (this tail and the next control): time cannot run back
                tail -= min(plan.costs.credit.get(event, 0.0), tail + x)
            t_end = env.now + tail
            if trace:
                trace.span(CYCLE_TID, f"cycle {cycle}", t0, t_end - t0, in_flight=start_ell, outcome=outcome, phase=phase)
            rows.append((t0, t_end, start_ell, outcome, got))
            if tail + x > 0:
                yield env.timeout(tail + x)
        sh.busy_ms["draft"] = busy_draft
        sh.busy_ms["verify"] = busy_verify


def run_pipeline(plan: PipelinePlan, tokens: int, streams: StreamSet, acc: AcceptanceSource | None,
                 trace: TraceRecorder | None = None, entities: tuple[type, type, type] | None = None) -> RawRun:
    """Wire the ranks and run until ``tokens`` are committed. ``entities``: the (shared state, stage, controller)
    classes of a protocol variant (``speculative.py``); default this module's."""
    shared_cls, stage_cls, controller_cls = entities or (_Shared, StageWorker, Controller)
    sh = shared_cls(plan, streams, trace)
    stages = [stage_cls(sh, s) for s in range(1, plan.n + 1)]
    for a, b in zip(stages, stages[1:]):
        a.next = b
    for st in stages:
        sh.env.process(st.run())
    ctl = controller_cls(sh, stages, tokens, acc)
    sh.env.run(until=sh.env.process(ctl.run()))
    sh.busy_ms.update({f"stage {st.s}": st.busy_ms for st in stages})
    cols = list(zip(*ctl.rows)) if ctl.rows else [(), (), (), (), ()]
    recs = CycleRecords(np.array(cols[0], dtype=float), np.array(cols[1], dtype=float), np.array(cols[2], dtype=np.int64),
                        np.array(cols[3], dtype=np.int64), np.array(cols[4], dtype=np.int64))
    return RawRun(recs, dict(sh.busy_ms), ctl.rejects, ctl.refills)
