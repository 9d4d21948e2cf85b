"""Per-rank event recording and the trace writer (format: docs/traces.md, loader: sim/traces.py).

Levels:
- ``full``: every stage forward, send, receive, draft forward, verify and control broadcast on every rank.
  On CUDA the recorder synchronises the device before each end stamp, so a duration is the op's real
  duration, not its launch time; that synchronisation is the instrumentation's cost (it serialises the
  host with the GPU and removes launch/compute overlap).
- ``cycle``: only rank 0's per-cycle records (start/end, control kind, accept/reject, committed tokens) and
  per-prompt totals; no extra synchronisation anywhere. Use it for wall-clock numbers.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

TRACE_FORMAT = "spd-trace"
TRACE_VERSION = 1
LEVELS = ("full", "cycle")


class Recorder:
    """Append-only event list for one rank. Times are this rank's ``perf_counter_ns``; alignment to rank 0's
    clock happens once, when the trace is written."""

    def __init__(self, rank: int, level: str, device: torch.device, stream_only: bool = False) -> None:
        if level not in LEVELS:
            raise ValueError(f"trace level {level!r} not in {LEVELS}")
        self.rank, self.level = rank, level
        self.fine = level == "full"
        self._cuda = device.type == "cuda"
        self._device = device
        # Ranks sharing a process sync only their own stream: a device-wide sync would wait for the other's.
        self._stream_only = stream_only
        self.events: list[dict] = []
        self.cycles: list[dict] = []
        self.prompts: list[dict] = []
        self.prompt = 0
        self.cycle = 0
        self._seq: dict[str, int] = {}

    def now(self) -> int:
        """A timestamp; in ``full`` mode on CUDA, after the device has finished the work queued so far."""
        if self.fine and self._cuda:
            if self._stream_only:
                torch.cuda.current_stream(self._device).synchronize()
            else:
                torch.cuda.synchronize(self._device)
        return time.perf_counter_ns()

    def add(self, name: str, t0_ns: int, t1_ns: int, **extra) -> None:
        if self.fine:
            ev = {"name": name, "prompt": self.prompt, "cycle": self.cycle, "t0_ns": t0_ns, "t1_ns": t1_ns}
            ev.update(extra)
            self.events.append(ev)

    def next_seq(self, link: str) -> int:
        """Per-link message counter: a send and its receive carry the same (link, seq) so hops can be matched."""
        s = self._seq.get(link, 0)
        self._seq[link] = s + 1
        return s


def environment(devices: list[str]) -> dict:
    """Versions and device names stamped into the trace header (rank 0's view plus per-rank device names)."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "driver": _driver_version() if any(d.startswith("cuda") for d in devices) else None,
           "platform": platform.platform(), "hostname": socket.gethostname(),
           "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None,
           "NCCL_NVLS_ENABLE": os.environ.get("NCCL_NVLS_ENABLE"),
           "CUDA_MODULE_LOADING": os.environ.get("CUDA_MODULE_LOADING"), "git_commit": _git_commit(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    return env


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def build_trace_lines(header: dict, clocks: list[dict], per_rank: list[dict], epoch_ns: int) -> list[str]:
    """The trace as JSON lines. ``per_rank[r]`` = {"events", "cycles", "prompts"} in rank r's own clock;
    every time is shifted to rank 0's clock (minus r's offset) and made relative to ``epoch_ns``."""
    lines = [json.dumps({"type": "header", "format": TRACE_FORMAT, "version": TRACE_VERSION, **header})]
    offsets = {c["rank"]: c["offset_ns"] for c in clocks}
    for c in clocks:
        lines.append(json.dumps({"type": "clock", **c}))
    events = []
    for r, part in enumerate(per_rank):
        shift = offsets.get(r, 0) + epoch_ns
        for ev in part["events"]:
            ev = dict(ev, rank=r, t0_ns=ev["t0_ns"] - shift, t1_ns=ev["t1_ns"] - shift)
            events.append(ev)
    events.sort(key=lambda e: (e["t0_ns"], e["rank"]))
    for ev in events:
        lines.append(json.dumps({"type": "event", **ev}))
    for cyc in per_rank[0]["cycles"]:
        lines.append(json.dumps({"type": "cycle", **dict(cyc, t0_ns=cyc["t0_ns"] - epoch_ns,
                                                         t1_ns=cyc["t1_ns"] - epoch_ns)}))
    for p in per_rank[0]["prompts"]:
        lines.append(json.dumps({"type": "prompt", **p}))
    return lines


def host_info() -> dict:
    """The process's host, pid and the CPUs it may run on (``--pin-cpus`` narrows them), as "0-3,8" ranges."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "argv0": sys.argv[0], "cpus": _ranges(cpus)}


def _ranges(xs: list[int]) -> str:
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)
