"""A step-by-step emulation of the SPD cycle (SPEC.md 1.1), written for clarity, not speed.

It walks the newest-first list of in-flight tokens exactly as the spec's pseudo-code does and counts
cycles, so tests (and the discrete-event simulator) can check the closed-form count
K = N + n - 2 + (n-1)·R against it. No numpy: it must not share code with the formulas it checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class OracleRun:
    cycles: int  # K
    committed: int  # N, including the token sampled at prefill
    rejects: int  # all rejects
    refills: int  # R: rejects followed by a refill (not the generation's last commit)
    decisions_used: int


def run_spd_cycles(stages: int, decisions: Iterable[bool], tokens: int) -> OracleRun:
    """Emulate one SPD generation of ``tokens`` committed tokens (>= 1) on ``stages`` (>= 2) stages.

    ``decisions`` gives the verification outcomes in order (True = draft accepted); it must be long
    enough (at most tokens - 1 are used). Returns the cycle count and the reject counts.
    """
    if stages < 2:
        raise ValueError("SPD needs at least 2 stages")
    outcomes = iter(decisions)
    pipeline = [0]  # depth of each in-flight token, newest first; x1 from prefill is committed, in flight at depth 0
    committed, cycles, rejects, refills, used = 1, 0, 0, 0, 0
    while committed < tokens:
        cycles += 1
        # the PDM drafts concurrently; every in-flight token advances through one stage
        pipeline = [d + 1 for d in pipeline]
        if len(pipeline) == stages:
            assert pipeline[-1] == stages, "the oldest token must have passed every stage"
            try:
                accepted = next(outcomes)
            except StopIteration:
                raise ValueError("not enough decisions for the requested tokens") from None
            used += 1
            committed += 1  # the draft (accept) or the target's correction (reject)
            if accepted:
                pipeline.pop()  # the finished token leaves; the verified draft is now the oldest
            else:
                rejects += 1
                if committed < tokens:
                    refills += 1  # a generation that ends on a correction needs no refill
                pipeline = [0]  # flush: only the correction remains, at depth 0; no new draft this cycle
                continue
        if committed < tokens:
            pipeline.insert(0, 0)  # the next draft enters at depth 0
    return OracleRun(cycles, committed, rejects, refills, used)
