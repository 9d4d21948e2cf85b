"""Single-device methods (AR, vanilla SD, EAGLE-3 chain drafting) as a SimPy process.

Everything runs serially on one device, so the fast recurrence (``fast.run_single``) is always
exact; this event-by-event version exists for the timeline (trace) and as its cross-check.
Per round: control, m serial draft steps, one target forward that verifies the chain (costing about
one AR step: memory-bound at batch 1), verify (LM head + acceptance), bookkeeping. The round
commits the accepted drafts plus the target's bonus/correction token.
"""
from __future__ import annotations

import numpy as np
import simpy

from .acceptance import ChainSource
from .fast import RawRun
from .latency import StreamSet
from .plan import SinglePlan
from .result import CycleRecords
from .trace import CONTROLLER_TID, CYCLE_TID, TraceRecorder


class SingleDevice:
    """The one rank of a single-device method."""

    def __init__(self, plan: SinglePlan, tokens: int, streams: StreamSet, chain: ChainSource | None,
                 trace: TraceRecorder | None):
        self.env = simpy.Environment()
        self.plan, self.tokens, self.streams, self.chain, self.trace = plan, tokens, streams, chain, trace
        self.rows: list[tuple] = []
        self.busy_ms = 0.0
        self.rejects = 0

    def _span(self, name: str, t: float, d: float, k: int) -> None:
        if self.trace:
            self.trace.span(CONTROLLER_TID, name, t, d, round=k)

    def run(self):
        env, plan, st = self.env, self.plan, self.streams
        c = plan.costs
        target = st.get("target", plan.target)
        if self.trace:
            self.trace.thread(CONTROLLER_TID, f"rank 0: {plan.method} (one device)")
            self.trace.thread(CYCLE_TID, "rounds")
        if plan.method == "ar":
            for k in range(1, self.tokens + 1):
                if self.trace:
                    self.trace.cycle(k)
                t = env.now
                d = target.next()
                yield env.timeout(d)
                self.busy_ms += d
                self._span("forward", t, d, k)
                self.rows.append((t, env.now, 0, 0, 1))
            return
        ctrl, draft = st.get("control", c.control), st.get("draft", plan.draft_step)
        verify, bookkeeping = st.get("verify", c.verify), st.get("bookkeeping", c.bookkeeping)
        m, committed, k = plan.steps, 0, 0
        while committed < self.tokens:
            k += 1
            if self.trace:
                self.trace.cycle(k)
            t0 = env.now
            x = ctrl.next()
            yield env.timeout(x)
            self._span("control", t0, x, k)
            for j in range(m):
                t = env.now
                d = draft.next()
                yield env.timeout(d)
                self.busy_ms += d
                self._span(f"draft step {j + 1}", t, d, k)
            t = env.now
            d = target.next()
            yield env.timeout(d)
            self.busy_ms += d
            self._span(f"target forward ({m + 1} tokens)", t, d, k)
            t = env.now
            v = verify.next()
            yield env.timeout(v)
            self.busy_ms += v
            self._span("verify", t, v, k)
            a = self.chain.next_round()
            if a < m:
                self.rejects += 1
            got = min(a + 1, self.tokens - committed)
            committed += got
            if self.trace:
                self.trace.instant(CONTROLLER_TID, f"accept {a}/{m}", env.now, round=k)
            b = bookkeeping.next()
            yield env.timeout(b)
            if self.trace:
                self.trace.span(CYCLE_TID, f"round {k}", t0, env.now - t0, accepted=a, committed=got)
            self.rows.append((t0, env.now, m, a, got))


def run_single(plan: SinglePlan, tokens: int, streams: StreamSet, chain: ChainSource | None,
               trace: TraceRecorder | None = None) -> RawRun:
    sim = SingleDevice(plan, tokens, streams, chain, trace)
    sim.env.run(until=sim.env.process(sim.run()))
    cols = list(zip(*sim.rows))
    recs = CycleRecords(np.array(cols[0], dtype=float), np.array(cols[1], dtype=float), np.array(cols[2], dtype=np.int64),
                        np.array(cols[3], dtype=np.int64), np.array(cols[4], dtype=np.int64))
    return RawRun(recs, {"target": sim.busy_ms}, sim.rejects, 0)
