"""The SPD / PPSD cycle schedule and the EAGLE-style round schedule, replayed over a generated path with
per-draft outcomes computed in batch (reference/training/evaluate.py). No model here: plain Python.

Why replay is exact (SPEC.md 1.1, reference/spd_controller.py): a draft is verified only if every older
in-flight draft was accepted (a reject flushes everything newer), so every verified draft was made from the
committed path. The SPD draft for position t+1 is made with m = min(n, t - c + 1) tokens in flight, c the
position of the last token that entered the pipeline as a committed token (the prefill token or a
correction). So a table ``outcome(t, m)`` over the committed path determines the schedule:

* T = 0: the path is AR's greedy output; a draft is accepted iff the draft's argmax equals path[t+1].
* T > 0: the path is sampled from the target; the verified draft is accepted with probability
  min(1, q(x)/p(x)) for the committed token x = path[t+1]. Sampling x ~ p and then accepting with that
  probability has exactly the joint law of speculative rejection sampling (P(x, accept) = min(p, q)(x),
  P(x, reject) = p(x) - min(p, q)(x)), so the accept/reject sequence has the executor's distribution; the
  seeded coins differ from the executor's generator, the law does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sim.closed_form import spd_cycles


@dataclass
class PipelineRun:
    """One generation under the SPD/PPSD schedule. ``tokens`` N (prefill token included), ``cycles`` K,
    ``refill_rejects`` R, ``accepts`` the raw sequence of verified drafts (True = accepted), ``inflight``
    the m each verified draft was made with."""

    tokens: int
    cycles: int
    refill_rejects: int
    accepts: list[bool] = field(default_factory=list)
    inflight: list[int] = field(default_factory=list)


def pipeline_schedule(prompt_len: int, num_new: int, n: int, accept: Callable[[int, int], bool]) -> PipelineRun:
    """Replay the controller's cycle loop for a path of ``num_new`` committed tokens after a prompt of
    ``prompt_len``. ``accept(t, m)``: is the draft for position t+1, made with m tokens in flight, accepted?"""
    if num_new < 1:
        raise ValueError("a generation commits at least the prefill token")
    committed, cycles, refills = 1, 0, 0
    accepts: list[bool] = []
    ms: list[int] = []
    # in-flight entries newest first: (position, m the draft was made with; 0 for committed tokens)
    pipeline: list[tuple[int, int]] = [(prompt_len, 0)]
    while committed < num_new:
        cycles += 1
        newest, m = pipeline[0][0], len(pipeline)  # the draft this cycle is made before the stage forwards
        if len(pipeline) < n:
            pipeline.insert(0, (newest + 1, m))
            continue
        finished = pipeline.pop()
        draft_pos, draft_m = pipeline[-1]
        ok = bool(accept(draft_pos - 1, draft_m))
        accepts.append(ok)
        ms.append(draft_m)
        committed += 1
        if committed >= num_new:
            break
        if ok:
            pipeline.insert(0, (newest + 1, m))
        else:
            refills += 1
            pipeline = [(finished[0] + 1, 0)]
    run = PipelineRun(num_new, cycles, refills, accepts, ms)
    if num_new >= 2:  # the exact count of SPEC.md 1.1 must hold for every replayed generation
        assert run.cycles == int(spd_cycles(num_new, n, refills)), (run, n)
    return run


@dataclass
class ChainRun:
    """One generation under EAGLE-style chain drafting: per round, the number of leading accepted drafts."""

    tokens: int
    rounds: list[int] = field(default_factory=list)   # accepted drafts per round (0..steps)
    drafted: list[int] = field(default_factory=list)  # drafts verified per round (< steps near the end)


def chain_schedule(prompt_len: int, num_new: int, steps: int, accept: Callable[[int, int], bool]) -> ChainRun:
    """Rounds from start s (last committed position; the target has features up to s-1): drafts s+1..s+steps;
    ``accept(s, k)`` says whether draft k of the round (position s+k) is accepted given 1..k-1 were. A round
    commits the accepted drafts plus one target token (bonus or correction)."""
    s, committed = prompt_len, 1
    run = ChainRun(num_new)
    while committed < num_new:
        room = min(steps, num_new - committed)  # past the end nothing is verified
        a = 0
        while a < room and accept(s, a + 1):
            a += 1
        gained = min(a + 1, num_new - committed)
        run.rounds.append(a)
        run.drafted.append(room)
        committed += gained
        s += gained
    return run
