"""Chrome-trace / Perfetto JSON timelines (open in https://ui.perfetto.dev or chrome://tracing).

One process (``pid``) per simulated method, one track (``tid``) per rank: tid 0 is the controller
(rank 0: control, draft, verify, bookkeeping, flush; instants for accept / reject / flush), tid s the
stage s worker (its forwards), tid 100 + s the messages stage s sends (kept on their own track so
they never overlap the forward that follows), and tid 1000 one span per cycle (args: in_flight,
outcome, phase = fill / steady / refill). Complete events ('X') carry ``ts`` and ``dur`` in
microseconds; instants ('i') carry ``s: "t"`` (thread scope).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..io import atomic_write_text

CONTROLLER_TID = 0
SEND_TID_BASE = 100
CYCLE_TID = 1000


class TraceRecorder:
    """Collects events of one run; stops recording after ``max_cycles`` cycles (traces stay viewable)."""

    def __init__(self, pid: int, label: str, max_cycles: int = 500):
        self.pid = pid
        self.max_cycles = max_cycles
        self.events: list[dict] = [{"ph": "M", "pid": pid, "name": "process_name", "args": {"name": label}}]
        self._named: set[int] = set()
        self.on = True

    def cycle(self, k: int) -> None:
        """Called by the controller at the start of cycle k (1-based)."""
        self.on = k <= self.max_cycles

    def thread(self, tid: int, name: str) -> None:
        if tid not in self._named:
            self._named.add(tid)
            self.events.append({"ph": "M", "pid": self.pid, "tid": tid, "name": "thread_name", "args": {"name": name}})
            self.events.append({"ph": "M", "pid": self.pid, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})

    def span(self, tid: int, name: str, start_ms: float, dur_ms: float, **args) -> None:
        if self.on:
            self.events.append({"ph": "X", "pid": self.pid, "tid": tid, "name": name, "ts": start_ms * 1000.0,
                                "dur": dur_ms * 1000.0, "args": args})

    def instant(self, tid: int, name: str, t_ms: float, **args) -> None:
        if self.on:
            self.events.append({"ph": "i", "s": "t", "pid": self.pid, "tid": tid, "name": name, "ts": t_ms * 1000.0, "args": args})


def write_trace(path: str | Path, recorders: list[TraceRecorder]) -> Path:
    events = [e for r in recorders for e in r.events]
    return atomic_write_text(path, json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}) + "\n")


def read_trace(path: str | Path) -> list[dict]:
    """The events of a trace file written by :func:`write_trace` (for tests and analysis)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read trace ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("traceEvents"), list):
        raise InputError(f"{path}: traceEvents: missing (not a Chrome trace)")
    return obj["traceEvents"]
