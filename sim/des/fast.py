"""The fast exact model: a vectorised recurrence over the accept/reject sequence (no events at all).

Where it applies (see ``choose.py``), a pipeline cycle's length is a closed expression of that
cycle's draws, because the controller's end-of-cycle sync waits for every stage that ran
(SPEC.md 1.3: ctrl + max(PDM, slowest stage + send) + verify + bookkeeping), and every stage's
input has arrived by the time the next GO does:

    SPD:          control + max(draft, control_hop + max_{s active}(forward_s + report_hop_s)) + verify + bookkeeping
    PPSD:         control + control_hop + max_{s active}(forward_s + report_hop_s) + verify + draft + bookkeeping
    AR pipeline:  control + control_hop + sum_s(forward_s + hop to the next rank) + verify + bookkeeping

where only the stages that report to rank 0 (``CycleCosts.report_stages``; default all) count in the max, and
in a cycle that verifies a token the ``head`` part of verify starts on the last stage's output alone (SPD:
max(draft, its arrival) + head), before the other outputs are waited for:
max(that, the others' arrival) + (verify - head).

plus ``flush`` on a reject that is followed by a refill. Which stages are active follows from the
outcomes alone: the pipeline holds l tokens at the start of a cycle (l = 1 after the prefill or a
flush, growing by one per cycle up to n, where every cycle verifies one token), and stages 1..l run.
Each stream is drawn in the same order as the dataflow model draws it, so both give the same
numbers for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .acceptance import AcceptanceSource, ChainSource
from .latency import StreamSet
from .plan import PipelinePlan, SinglePlan
from .result import NO_VERIFY, CycleRecords


@dataclass(frozen=True)
class RawRun:
    """What a model measured; ``simulate`` turns it into a SimResult."""

    records: CycleRecords
    rank_busy_ms: dict[str, float]  # rank name -> compute time
    rejects: int
    refill_rejects: int


def pipeline_cycle_layout(n: int, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cycle: tokens in flight at its start, outcome (-1 none / 0 / 1), and whether it flushes.

    ``outcomes`` holds one accept/reject per verification, i.e. one per decoded token. Cycle count
    K = (n-1) fill + T verifications + (n-1) per refilling reject = N + n - 2 + (n-1)R with N = T + 1.
    """
    t = len(outcomes)
    refill = outcomes == 0
    refill[-1:] = False  # the last commit ends the generation: no refill after it
    before = np.concatenate([[0], np.cumsum(refill[:-1])])  # refills before verification i
    vpos = (n - 1) + np.arange(t) + (n - 1) * before  # cycle index of verification i
    k = (n - 1) + t + (n - 1) * int(refill.sum())
    in_flight = np.full(k, n, dtype=np.int64)
    ramp = np.arange(1, n, dtype=np.int64)
    starts = np.concatenate([[0], vpos[refill] + 1])  # the fill block and each refill block
    in_flight[(starts[:, None] + np.arange(n - 1)).ravel()] = np.tile(ramp, len(starts))
    outcome = np.full(k, NO_VERIFY, dtype=np.int64)
    outcome[vpos] = outcomes
    flush = np.zeros(k, dtype=bool)
    flush[vpos[refill]] = True
    return in_flight, outcome, flush


def run_pipeline(plan: PipelinePlan, tokens: int, streams: StreamSet, acc: AcceptanceSource | None) -> RawRun:
    n = plan.n
    if plan.method == "ar_pipeline":
        k = tokens
        in_flight = np.ones(k, dtype=np.int64)  # one token walks the whole pipeline
        outcome = np.full(k, NO_VERIFY, dtype=np.int64)
        flush = np.zeros(k, dtype=bool)
        committed = np.ones(k, dtype=np.int64)
        rejects = 0
    else:
        outs = acc.outcomes(tokens)
        in_flight, outcome, flush = pipeline_cycle_layout(n, outs)
        k = len(in_flight)
        committed = (outcome != NO_VERIFY).astype(np.int64)
        rejects = int((outs == 0).sum())
    c = plan.costs
    control = streams.get("control", c.control).take(k)
    dur = control.copy()
    chop = streams.get("control_hop", c.control_hop).take(k)
    busy: dict[str, float] = {}
    if plan.method != "ar_pipeline" and c.verify_fill is not None:  # no token finishes while the pipeline fills
        fill = in_flight < n
        verify = np.empty(k)
        verify[~fill] = streams.get("verify", c.verify).take(int((~fill).sum()))
        verify[fill] = streams.get("verify_fill", c.verify_fill).take(int(fill.sum()))
    else:
        verify = streams.get("verify", c.verify).take(k)
    busy["verify"] = float(verify.sum())
    if plan.method == "ar_pipeline":
        path = chop.copy()
        for s in range(n):
            f = streams.get(f"stage{s + 1}.forward", plan.stage[s]).take(k)
            busy[f"stage {s + 1}"] = float(f.sum())
            hop = plan.next_hop[s] if s < n - 1 else plan.report_hop[s]
            path += f + streams.get(f"stage{s + 1}.send", hop).take(k)
        dur += path + verify
        tail = verify.copy()  # rank 0's serial work once the cycle's waits are over (the dataflow model's ``tail``)
    else:
        final = np.full(k, -np.inf)  # the last stage's output at rank 0 (only in cycles that verify a token)
        others = np.full(k, -np.inf)  # the other reporting stages' outputs
        reports = plan.reports
        for s in range(n):
            active = in_flight > s
            m = int(active.sum())
            f = streams.get(f"stage{s + 1}.forward", plan.stage[s]).take(m)
            busy[f"stage {s + 1}"] = float(f.sum())
            arrive = np.full(k, -np.inf)
            arrive[active] = f + streams.get(f"stage{s + 1}.report", plan.report_hop[s]).take(m)
            if plan.start and plan.start[s].terms:  # it waits that long after its GO before it computes
                arrive[active] += streams.get(f"stage{s + 1}.start", plan.start[s]).take(m)
            if reports[s]:
                into = final if s == n - 1 else others
                np.maximum(into, arrive, out=into)
        draft = streams.get("draft", plan.draft).take(k)
        busy["draft"] = float(draft.sum())
        head = np.zeros(k)
        verifying = in_flight == n
        if c.head.terms:  # launched on the last stage's output (SPD: once the draft is done) before the others
            head[verifying] = streams.get("head", c.head).take(int(verifying.sum()))
            np.minimum(head, verify, out=head)
        first = np.maximum(draft, final + chop) if plan.method == "spd" else final + chop
        ready = np.maximum(first + head, others + chop)
        if plan.method == "spd":
            np.maximum(ready, draft, out=ready)
        ready[np.isneginf(ready)] = 0.0  # a filling cycle whose stages send nothing to rank 0 (PPSD)
        tail = verify - head + (draft if plan.method != "spd" else 0.0)
        dur += ready + tail
    book = streams.get("bookkeeping", c.bookkeeping).take(k)
    dur += book
    tail += book
    nflush = int(flush.sum())
    if nflush:
        fl = streams.get("flush", c.flush).take(nflush)
        dur[flush] += fl
        tail[flush] += fl
    if c.credit:  # an uninstrumented run's cycle, shorter by what tracing costs that kind of cycle
        cut = np.zeros(k)
        if plan.method == "ar_pipeline":
            cut[:] = c.credit.get("ar", 0.0)
        else:
            for code, event in ((1, "accept"), (0, "reject"), (NO_VERIFY, "fill")):
                cut[outcome == code] = c.credit.get(event, 0.0)
        # as in the dataflow model, a cycle gives back at most its serial tail and the next cycle's control (the
        # work scheduled after its last wait): time cannot run back past what it has already waited for
        room = tail + np.append(control[1:], 0.0)
        dur -= np.minimum(cut, room)
    end = np.cumsum(dur)
    start = end - dur
    recs = CycleRecords(start, end, in_flight, outcome, committed)
    return RawRun(recs, busy, rejects, nflush)


def run_single(plan: SinglePlan, tokens: int, streams: StreamSet, chain: ChainSource | None) -> RawRun:
    """AR: one forward per token. SD / EAGLE-3: rounds of m draft steps + one target forward, each
    committing accepted drafts + 1 (the bonus or correction token), the last round cut at the goal."""
    c = plan.costs
    if plan.method == "ar":
        k = tokens
        dur = streams.get("target", plan.target).take(k)
        busy = {"target": float(dur.sum())}
        acc_counts = np.zeros(k, dtype=np.int64)
        committed = np.ones(k, dtype=np.int64)
        rejects = 0
    else:
        counts, total = [], 0
        while total < tokens:  # draw rounds in the source's order until the goal is reached
            part = chain.rounds(4096)
            counts.append(part)
            total += int((part + 1).sum())
        acc_counts = np.concatenate(counts)
        cum = np.cumsum(acc_counts + 1)
        k = int(np.searchsorted(cum, tokens) + 1)
        acc_counts = acc_counts[:k]
        committed = acc_counts + 1
        committed[-1] -= int(cum[k - 1]) - tokens
        m = plan.steps
        drafts = streams.get("draft", plan.draft_step).take(k * m).reshape(k, m).sum(axis=1)
        target = streams.get("target", plan.target).take(k)
        verify = streams.get("verify", c.verify).take(k)
        dur = streams.get("control", c.control).take(k) + drafts + target + verify + streams.get("bookkeeping", c.bookkeeping).take(k)
        busy = {"target": float(target.sum() + drafts.sum() + verify.sum())}
        rejects = int((acc_counts < m).sum())
    end = np.cumsum(dur)
    start = end - dur
    recs = CycleRecords(start, end, np.full(k, plan.steps, dtype=np.int64), acc_counts, committed)
    return RawRun(recs, busy, rejects, 0)
