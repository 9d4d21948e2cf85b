"""The outcome of one simulated run: summary numbers, per-resource utilisation, per-cycle records."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# outcome codes of a pipeline cycle
NO_VERIFY = -1  # fill / refill cycle: nothing reached the end of the pipeline
REJECT = 0
ACCEPT = 1


@dataclass(frozen=True)
class CycleRecords:
    """One row per cycle (pipeline methods) or round (single-device methods), columnar numpy arrays.

    ``in_flight``: tokens in the pipeline at the start of the cycle (= stages that run);
    for chain methods the drafts of the round. ``outcome``: pipeline cycles 1 accept / 0 reject /
    -1 no verification; chain rounds the number of accepted drafts. ``committed``: tokens committed.
    """

    start_ms: np.ndarray
    end_ms: np.ndarray
    in_flight: np.ndarray
    outcome: np.ndarray
    committed: np.ndarray

    def __len__(self) -> int:
        return len(self.start_ms)

    @property
    def duration_ms(self) -> np.ndarray:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class SimResult:
    """One method, one seed. Times in ms; ``tokens`` are the decoded tokens (the prefill token, SPEC.md's
    x1, is produced before decoding starts and is not timed); N = tokens + 1 in SPEC.md's K formula."""

    name: str
    method: str
    model: str  # "fast" (exact recurrence) | "dataflow" (SimPy processes)
    model_reason: str
    seed: int
    tokens: int
    time_ms: float  # decode time: start of the first cycle to the end of the last
    cycles: int  # K: pipeline cycles, or rounds / steps for single-device methods
    rejects: int  # all rejected verifications (pipeline methods); rounds with a rejected draft (chain)
    refill_rejects: int  # rejects followed by a refill (SPEC.md's R; the last one ends the run)
    accept_length: float  # pipeline: pooled L_acc = n*N/K; chain: tokens per round; AR: 1
    ar_token_ms: float  # mean single-device AR step: the speedup denominator
    stages: int | None
    busy_fraction: dict[str, float]  # device -> fraction of the run it computed
    bubble_ms: dict[str, float]  # rank -> time it sat idle (run time - its own compute)
    records: CycleRecords
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return 1000.0 * self.tokens / self.time_ms if self.time_ms > 0 else float("inf")

    @property
    def ar_tokens_per_s(self) -> float:
        return 1000.0 / self.ar_token_ms

    @property
    def speedup(self) -> float:
        """Wall-clock speedup over single-device AR (tokens/s ratio)."""
        return self.tokens_per_s / self.ar_tokens_per_s

    @property
    def mean_cycle_ms(self) -> float:
        return self.time_ms / self.cycles if self.cycles else 0.0

    def to_json(self, records: bool = False) -> dict:
        d = {
            "name": self.name, "method": self.method, "model": self.model, "model_reason": self.model_reason,
            "seed": self.seed, "tokens": self.tokens, "time_ms": self.time_ms, "tokens_per_s": self.tokens_per_s,
            "ar_tokens_per_s": self.ar_tokens_per_s, "speedup": self.speedup, "accept_length": self.accept_length,
            "accept_length_pooling": "pooled n*N/K" if self.stages and self.method != "ar_pipeline" else "pooled tokens/rounds",
            "cycles": self.cycles, "rejects": self.rejects, "refill_rejects": self.refill_rejects,
            "mean_cycle_ms": self.mean_cycle_ms, "stages": self.stages,
            "busy_fraction": self.busy_fraction, "bubble_ms": self.bubble_ms, "notes": list(self.notes),
        }
        d.update(self.extra)
        if records:
            r = self.records
            d["records"] = {"start_ms": r.start_ms.tolist(), "end_ms": r.end_ms.tolist(), "in_flight": r.in_flight.tolist(),
                            "outcome": r.outcome.tolist(), "committed": r.committed.tolist()}
        return d


def utilisation(total_ms: float, rank_busy_ms: dict[str, float], device_of: dict[str, int]) -> tuple[dict, dict]:
    """Busy fraction per device (sum of its ranks' compute / run time) and idle ms per rank."""
    dev_busy: dict[int, float] = {}
    for rank, busy in rank_busy_ms.items():
        dev_busy[device_of[rank]] = dev_busy.get(device_of[rank], 0.0) + busy
    frac = {f"device {d}": (b / total_ms if total_ms > 0 else 0.0) for d, b in sorted(dev_busy.items())}
    bubble = {rank: max(total_ms - busy, 0.0) for rank, busy in rank_busy_ms.items()}
    return frac, bubble
