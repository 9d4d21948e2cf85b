"""Executor traces, torch-free: ``load_trace(run_dir) -> Trace`` and the Chrome-trace / Perfetto export.

The format (JSON lines, versioned) is documented in docs/traces.md and written by reference/runtime. All
times are nanoseconds on rank 0's clock (other ranks shifted by their measured offset), relative to the
run's epoch. ``Trace`` exposes what calibration needs: per-stage forward durations, hop latencies, draft /
verify / control durations, cycle durations, the accept/reject sequence, and N, K, R, tokens/s.
"""
from __future__ import annotations

import gzip
import json
import lzma
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from .errors import InputError

TRACE_FORMAT = "spd-trace"
SUPPORTED_VERSIONS = (1,)
TRACE_FILE = "trace.jsonl"
# a run directory's trace: plain, or compressed (committed sets use xz, a third smaller than gzip)
TRACE_FILES = (TRACE_FILE, TRACE_FILE + ".xz", TRACE_FILE + ".gz")


def process_layout(devices: list[str], procs: list[int]) -> str:
    """How an executor run mapped ranks to processes, for the ranks that share a device: ``per-device`` (each
    device's ranks in one process, one thread each; also when no two ranks share a device), ``per-rank`` (every
    one its own process, the GPU time-sliced between them) or ``mixed`` (the controller hosting stage 1 only)."""
    pairs = [procs[a] == procs[b] for a in range(len(devices)) for b in range(a + 1, len(devices))
             if devices[a] == devices[b]]
    return "per-device" if all(pairs) else "per-rank" if not any(pairs) else "mixed"


def header_process_layout(h: dict) -> str:
    """``process_layout`` of a trace header; older headers: from their rank/process lists, else from the
    ``controller_process`` note (the first runtime ran every rank in its own process)."""
    if h.get("process_layout"):
        return str(h["process_layout"])
    devs, procs = h.get("rank_devices"), h.get("rank_processes")
    if devs and procs and len(devs) == len(procs):
        return process_layout(list(devs), list(procs))
    return "per-device" if str(h.get("controller_process", "")).startswith("shared") else "per-rank"


@dataclass(frozen=True)
class Event:
    """One timed operation on one rank. ``name`` in: forward, prefill_forward, send, recv, ctrl_send,
    ctrl_recv, draft, verify. ``extra``: peer, link ("src->dst" ranks), seq, bytes, position, ..."""

    rank: int
    name: str
    prompt: int
    cycle: int
    t0_ns: int
    t1_ns: int
    extra: dict = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.t1_ns - self.t0_ns) / 1e6


@dataclass(frozen=True)
class CycleRecord:
    """Rank 0's view of one cycle (SPD) or one decode step (AR methods). ``event``: fill | accept | reject
    (SPD) or ar."""

    prompt: int
    cycle: int
    control: str
    in_flight: int
    event: str
    committed: tuple[int, ...]
    new_token: int
    t0_ns: int
    t1_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.t1_ns - self.t0_ns) / 1e6


@dataclass(frozen=True)
class PromptRecord:
    prompt: int
    question_id: Any
    prompt_tokens: int
    N: int  # committed tokens including the prefill token
    K: int  # cycles (SPD) / decode steps (AR)
    R: int  # rejects followed by a refill
    rejects: int
    accepts: tuple[bool, ...]
    stop_reason: str
    prefill_ns: int
    decode_ns: int

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.N - 1) / (self.decode_ns / 1e9) if self.decode_ns > 0 else float("nan")


@dataclass(frozen=True)
class Hop:
    """A hidden-state message matched across ranks by (link, seq). ``latency_ns`` = receive end minus the
    later of send start and receive start: the time the data took once both sides were ready."""

    link: str
    seq: int
    send: Event
    recv: Event

    @property
    def latency_ns(self) -> int:
        return self.recv.t1_ns - max(self.send.t0_ns, self.recv.t0_ns)


@dataclass
class Trace:
    path: Path
    header: dict
    clocks: list[dict]
    events: list[Event]
    cycles: list[CycleRecord]
    prompts: list[PromptRecord]
    summary: dict

    # ---- run facts
    @property
    def version(self) -> int:
        return int(self.header["version"])

    @property
    def method(self) -> str:
        return str(self.header["method"])

    @property
    def n(self) -> int:
        return int(self.header["n_stages"])

    @property
    def N(self) -> int:
        return sum(p.N for p in self.prompts)

    @property
    def K(self) -> int:
        return sum(p.K for p in self.prompts)

    @property
    def R(self) -> int:
        return sum(p.R for p in self.prompts)

    @property
    def decode_tokens_per_s(self) -> float:
        """Pooled over prompts: sum(N_i - 1) / sum(decode time_i)."""
        s = sum(p.decode_ns for p in self.prompts) / 1e9
        return sum(p.N - 1 for p in self.prompts) / s if s > 0 else float("nan")

    def accept_sequence(self, prompt: int | None = None) -> list[bool]:
        """Raw accept/reject sequence of verified drafts, in order (one prompt, or all concatenated)."""
        out: list[bool] = []
        for p in self.prompts:
            if prompt is None or p.prompt == prompt:
                out.extend(p.accepts)
        return out

    def cycle_count_violations(self) -> list[str]:
        """Prompts whose K breaks K = N + n - 2 + (n-1)R (SPEC.md 1.1); empty when all obey (SPD only)."""
        if self.method != "spd":
            return []
        n = self.n
        return [f"prompt {p.prompt}: K={p.K}, N={p.N}, R={p.R}, n={n} -> expected {p.N + n - 2 + (n - 1) * p.R}"
                for p in self.prompts if p.N >= 2 and p.K != p.N + n - 2 + (n - 1) * p.R]

    # ---- durations (ms) for calibration
    def select(self, name: str, rank: int | None = None) -> list[Event]:
        return [e for e in self.events if e.name == name and (rank is None or e.rank == rank)]

    def stage_forward_ms(self, stage: int) -> list[float]:
        """One-token forward durations of stage ``stage`` (0-based; it runs on rank stage+1)."""
        return [e.duration_ms for e in self.select("forward", stage + 1)]

    def ar_forward_ms(self) -> list[float]:
        """Single-device AR: the whole model's one-token forward (rank 0)."""
        return [e.duration_ms for e in self.select("forward", 0)] if self.method == "ar" else []

    def draft_ms(self) -> list[float]:
        return [e.duration_ms for e in self.select("draft", 0)]

    def verify_ms(self) -> list[float]:
        """Rank 0 after the stages' outputs arrive: verify + bookkeeping + next draft pick."""
        return [e.duration_ms for e in self.select("verify", 0) if e.cycle > 0]

    def control_ms(self) -> list[float]:
        return [e.duration_ms for e in self.select("ctrl_send", 0)]

    def cycle_ms(self) -> list[float]:
        return [c.duration_ms for c in self.cycles]

    def hops(self, link: str | None = None) -> list[Hop]:
        sends = {(e.extra.get("link"), e.extra.get("seq")): e for e in self.select("send")}
        out = []
        for r in self.select("recv"):
            key = (r.extra.get("link"), r.extra.get("seq"))
            s = sends.get(key)
            if s is not None and (link is None or key[0] == link):
                out.append(Hop(key[0], key[1], s, r))
        return out

    def hop_ms(self, link: str | None = None, one_token: bool = True) -> list[float]:
        """Latencies (ms) of matched hidden-state hops; ``one_token`` drops the prefill messages (cycle 0)."""
        return [h.latency_ns / 1e6 for h in self.hops(link) if not one_token or h.send.cycle > 0]

    def stats(self) -> dict[str, float]:
        """Means (ms) of every duration family present: a quick look, not a fit."""
        fams = {"cycle": self.cycle_ms(), "draft": self.draft_ms(), "verify": self.verify_ms(),
                "control": self.control_ms(), "hop": self.hop_ms(), "ar_forward": self.ar_forward_ms()}
        for s in range(self.n if self.method != "ar" else 0):
            fams[f"stage{s}_forward"] = self.stage_forward_ms(s)
        return {k: mean(v) for k, v in fams.items() if v}


# ------------------------------------------------------------------------------------------- loading
def find_trace_file(run_dir: str | Path) -> Path | None:
    """The trace file of a run directory (plain or compressed), or None."""
    return next((Path(run_dir) / n for n in TRACE_FILES if (Path(run_dir) / n).is_file()), None)


def read_trace_text(f: Path, shown: str | None = None) -> str:
    """A trace file's text; gzip and xz are recognised by content, whatever the name. Errors name ``shown``."""
    shown = shown or str(f)
    try:
        data = f.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif data[:6] == b"\xfd7zXZ\x00":
            data = lzma.decompress(data)
        return data.decode()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InputError(f"{shown}: not a readable compressed trace ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown}: not a text trace ({exc})") from None


def load_trace(path: str | Path, shown: str | None = None) -> Trace:
    """A run directory (containing trace.jsonl, .xz or .gz) or the trace file itself. ``shown``: the name errors
    and the result carry instead of the path (an uploaded file's name)."""
    p = Path(path)
    f = (find_trace_file(p) or p / TRACE_FILE) if p.is_dir() else p
    if not f.is_file():
        raise InputError(f"{f}: no trace file (expected a run directory with {TRACE_FILE})")
    text = read_trace_text(f, shown)
    f = Path(shown) if shown else f
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise InputError(f"{f}: empty, not a trace")
    recs = []
    for i, ln in enumerate(lines, 1):
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError as exc:
            raise InputError(f"{f}: line {i}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "type" not in rec:
            raise InputError(f"{f}: line {i}: expected an object with a 'type'")
        recs.append(rec)
    head = recs[0]
    if head.get("type") != "header" or head.get("format") != TRACE_FORMAT:
        raise InputError(f"{f}: line 1: not an {TRACE_FORMAT} header")
    if head.get("version") not in SUPPORTED_VERSIONS:
        raise InputError(f"{f}: header: trace version {head.get('version')!r} not supported "
                         f"(this loader reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
    for key in ("method", "n_stages"):
        if key not in head:
            raise InputError(f"{f}: header: missing {key!r}")
    clocks, events, cycles, prompts, summary = [], [], [], [], {}
    for i, rec in enumerate(recs[1:], 2):
        kind = rec["type"]
        try:
            if kind == "clock":
                clocks.append(rec)
            elif kind == "event":
                extra = {k: v for k, v in rec.items()
                         if k not in ("type", "rank", "name", "prompt", "cycle", "t0_ns", "t1_ns")}
                events.append(Event(int(rec["rank"]), str(rec["name"]), int(rec["prompt"]), int(rec["cycle"]),
                                    int(rec["t0_ns"]), int(rec["t1_ns"]), extra))
            elif kind == "cycle":
                cycles.append(CycleRecord(int(rec["prompt"]), int(rec["cycle"]), str(rec["control"]),
                                          int(rec["in_flight"]), str(rec["event"]),
                                          tuple(int(t) for t in rec["committed"]), int(rec["new_token"]),
                                          int(rec["t0_ns"]), int(rec["t1_ns"])))
            elif kind == "prompt":
                prompts.append(PromptRecord(int(rec["prompt"]), rec.get("question_id"), int(rec["prompt_tokens"]),
                                            int(rec["N"]), int(rec["K"]), int(rec["R"]), int(rec["rejects"]),
                                            tuple(bool(a) for a in rec["accepts"]), str(rec["stop_reason"]),
                                            int(rec["prefill_ns"]), int(rec["decode_ns"])))
            elif kind == "summary":
                summary = {k: v for k, v in rec.items() if k != "type"}
            elif kind == "header":
                raise InputError(f"{f}: line {i}: a second header")
            # unknown record types of the same version are skipped: readers stay forward-compatible
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{f}: line {i}: malformed {kind} record ({type(exc).__name__}: {exc})") from None
    return Trace(f, head, clocks, events, cycles, prompts, summary)


# ------------------------------------------------------------------------------------------- export
def to_chrome_trace(trace: Trace) -> dict:
    """Chrome-trace JSON (opens in Perfetto / chrome://tracing): one process per rank, complete events in
    microseconds, cycles on a track of rank 0, flow arrows for matched hidden-state hops."""
    ev: list[dict] = []
    ranks = sorted({e.rank for e in trace.events} | {0})
    for r in ranks:
        name = "rank 0 controller" if r == 0 else f"rank {r} stage {r - 1}"
        ev.append({"ph": "M", "name": "process_name", "pid": r, "tid": 0, "args": {"name": name}})
        ev.append({"ph": "M", "name": "process_sort_index", "pid": r, "tid": 0, "args": {"sort_index": r}})
    for e in trace.events:
        tid = 1 if e.name in ("send", "recv", "ctrl_send", "ctrl_recv") else 0
        ev.append({"ph": "X", "name": e.name, "pid": e.rank, "tid": tid, "ts": e.t0_ns / 1e3,
                   "dur": max(e.t1_ns - e.t0_ns, 0) / 1e3, "args": {"prompt": e.prompt, "cycle": e.cycle, **e.extra}})
    for c in trace.cycles:
        ev.append({"ph": "X", "name": f"cycle {c.cycle} {c.event}", "pid": 0, "tid": 2, "ts": c.t0_ns / 1e3,
                   "dur": max(c.t1_ns - c.t0_ns, 0) / 1e3,
                   "args": {"prompt": c.prompt, "control": c.control, "committed": list(c.committed)}})
    for i, h in enumerate(trace.hops()):
        ev.append({"ph": "s", "id": i, "name": "hop", "cat": "hop", "pid": h.send.rank, "tid": 1,
                   "ts": h.send.t0_ns / 1e3})
        ev.append({"ph": "f", "id": i, "name": "hop", "cat": "hop", "pid": h.recv.rank, "tid": 1, "bp": "e",
                   "ts": h.recv.t1_ns / 1e3})
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "metadata": {"format": trace.header.get("format"), "version": trace.version, "method": trace.method,
                         "n_stages": trace.n}}
