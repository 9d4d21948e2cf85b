"""Clock alignment across ranks by ping exchange (NTP-style), on the gloo control plane.

Rank 0 sends t1; rank r stamps t2 on receipt and t3 on reply; rank 0 stamps t4. The offset of r's clock
against rank 0's is ((t2 - t1) + (t3 - t4)) / 2, exact when the two directions take equally long; the
sample with the smallest round trip wins. Its error is bounded by rtt_min / 2. After applying the offset a
second exchange measures what is left (``residual_ns``); the same exchange at the end of the run measures
drift. All clocks are ``time.perf_counter_ns`` (CLOCK_MONOTONIC: on one host every process shares it, so
local offsets come out near zero and the residual shows the measurement noise).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .comm import Comm


@dataclass
class ClockSync:
    rank: int
    offset_ns: int  # this rank's clock minus rank 0's clock
    rtt_min_ns: int
    residual_ns: int = 0  # offset still measured after correction (start of run)
    drift_ns: int = 0  # offset measured at the end of the run minus offset_ns

    def to_dict(self) -> dict:
        return {"rank": self.rank, "offset_ns": self.offset_ns, "rtt_min_ns": self.rtt_min_ns,
                "residual_ns": self.residual_ns, "drift_ns": self.drift_ns}


def _ping_round(comm: Comm, peer: int, rounds: int) -> tuple[int, int]:
    """Rank 0's side against one peer: (offset_ns, rtt_ns) of the sample with the smallest round trip."""
    best = (0, 1 << 62)
    for _ in range(rounds):
        t1 = time.perf_counter_ns()
        comm.send_ints(torch.tensor([t1], dtype=torch.int64), peer)
        t2, t3 = (int(x) for x in comm.recv_ints(2, peer, "clock ping reply"))
        t4 = time.perf_counter_ns()
        rtt = (t4 - t1) - (t3 - t2)
        if rtt < best[1]:
            best = (((t2 - t1) + (t3 - t4)) // 2, rtt)
    return best


def _pong_round(comm: Comm, rounds: int, correction_ns: int) -> None:
    for _ in range(rounds):
        comm.recv_ints(1, 0, "clock ping")
        t2 = time.perf_counter_ns() - correction_ns
        t3 = time.perf_counter_ns() - correction_ns
        comm.send_ints(torch.tensor([t2, t3], dtype=torch.int64), 0)


def _exchange(comm: Comm, rounds: int, corrections: dict[int, int]) -> dict[int, tuple[int, int]]:
    """One exchange, rank 0 against each peer in turn. Rank 0 returns {peer: (offset, rtt)}; peers learn
    nothing (they get their offset in a follow-up message)."""
    out = {}
    if comm.rank == 0:
        for peer in range(1, comm.world_size):
            out[peer] = _ping_round(comm, peer, rounds)
    else:
        _pong_round(comm, rounds, corrections.get(comm.rank, 0))
    return out


def align(comm: Comm, rounds: int = 20) -> ClockSync:
    """Measure every rank's offset, tell each rank its own, and verify (residual). Collective."""
    first = _exchange(comm, rounds, {})
    if comm.rank == 0:
        for peer, (off, rtt) in first.items():
            comm.send_ints(torch.tensor([off, rtt], dtype=torch.int64), peer)
        mine = ClockSync(0, 0, 0)
    else:
        off, rtt = (int(x) for x in comm.recv_ints(2, 0, "clock offset"))
        mine = ClockSync(comm.rank, off, rtt)
    second = _exchange(comm, rounds, {comm.rank: mine.offset_ns})
    if comm.rank == 0:
        for peer, (res, _) in second.items():
            comm.send_ints(torch.tensor([res], dtype=torch.int64), peer)
    else:
        mine.residual_ns = int(comm.recv_ints(1, 0, "clock residual")[0])
    return mine


def measure_drift(comm: Comm, sync: ClockSync, rounds: int = 10) -> None:
    """End-of-run exchange with the start offset applied: what is measured now is the drift. Collective."""
    res = _exchange(comm, rounds, {comm.rank: sync.offset_ns})
    if comm.rank == 0:
        for peer, (drift, _) in res.items():
            comm.send_ints(torch.tensor([drift], dtype=torch.int64), peer)
    else:
        sync.drift_ns = int(comm.recv_ints(1, 0, "clock drift")[0])
