"""Shared builders for the simulator tests (no tests here)."""
from __future__ import annotations

from sim.scenario import parse_scenario

BASE_TIMING = {"layer": 1.0, "ar_token": 32.0, "stage_overhead": 0.0, "hop": 0.1, "draft_layer": 1.0,
               "verify": 0.4, "cycle_overhead": 0.8}


def scenario(methods: list[dict], acceptance: dict | None = None, layers: int = 32, topology: dict | None = None,
             hidden_size: int | None = None, **timing):
    target = {"layers": layers} if hidden_size is None else {"layers": layers, "hidden_size": hidden_size}
    obj = {"target": target, "timing_ms": {**BASE_TIMING, **timing},
           "acceptance": acceptance or {"alpha": 0.8}, "methods": methods}
    if topology:
        obj["topology"] = topology
    return parse_scenario(obj, "test.json")


def refill_rejects(outcomes) -> int:
    """SPEC.md's R: rejects followed by a refill (a final reject ends the run)."""
    outcomes = list(outcomes)
    return sum(1 for o in outcomes[:-1] if o == 0)


def chain_rounds(bits, m: int, tokens: int) -> list[int]:
    """Oracle for chain drafting: each round reads bits until the first 0 or m ones (the replay cycles)."""
    rounds, i, got = [], 0, 0
    while got < tokens:
        a = 0
        while a < m and bits[i % len(bits)] == 1:
            a += 1
            i += 1
        if a < m:
            i += 1  # the rejected draft's outcome is consumed too
        rounds.append(a)
        got += a + 1
    return rounds
