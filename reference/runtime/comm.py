"""Point-to-point transport between ranks, the control-message codec, and bounded receives.

Two planes, one process group (``cpu:gloo,cuda:nccl`` on GPU, ``gloo`` on CPU):

- the **control plane** (control messages, clock pings, trace gathering) is CPU int64 tensors over gloo: the
  stages need these values on the host anyway (positions, crop lengths, which stages are active);
- the **data plane** (hidden states) goes straight over NCCL between ranks on *different* GPUs. Ranks of one
  process hand them over in memory (below). Ranks that share one GPU from different processes
  (``--process-per-rank``) cannot talk NCCL to each other (NCCL refuses two ranks of one communicator on the
  same device), so their hidden states are staged through host memory: device->host copy, gloo,
  host->device. That costs two copies and a TCP round on the same host; the traces record it as an ordinary hop.

Every receive waits at most ``timeout_s``: a dead or hung peer turns into ``PeerError`` on every rank that
waits for it, never into a silent hang.

Ranks and processes: ``procs[r]`` is the process of rank r (``RunConfig.rank_processes``: on CUDA the ranks
placed on one GPU share a process, one thread each with its own ``Comm`` view and CUDA stream; on CPU the
controller hosts stage 1). What ranks of one process send each other goes through an in-process ``Loopback``
(a device tensor and a CUDA event: no copy through the host, no time-slicing of the GPU between two
contexts). When a process hosts several ranks, every pair of ranks in different processes talks over its own
two-rank group: two threads must never share one NCCL
communicator, whose operations run in issue order on one stream (a send queued by one thread would block a
receive queued by the other). Invariant in that mode: no device-wide synchronisation (``torch.cuda.synchronize``,
``empty_cache``) once decoding has begun: it would wait for the other thread's NCCL send, which completes only
when its receiver, which may be waiting for this thread, gets there. A kernel launch can block the same way
(a kernel's first launch under CUDA's lazy module loading waits for the device's queue to drain; eager steps
blocked in a launch even with CUDA_MODULE_LOADING=EAGER): a thread must not post an NCCL operation that can
wait on the other thread's next kernels before that thread has launched them
(``stage.prefill_needs_launch_signal`` for prefills, ``stage.step_needs_launch_signal`` for eager decode
steps; graphed steps replay what the capture loaded and allocated).
"""
from __future__ import annotations

import datetime
import queue
import threading
import time
from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.distributed as dist

from ..spd_controller import ControlMessage


SEND_SLOTS = 2


class PeerError(RuntimeError):
    """A peer rank died, hung past the receive timeout, or broke the protocol."""


class Op(IntEnum):
    """What a wire message asks of the stages. SPD cycles carry the controller's ``ControlMessage``."""

    PREFILL = 1  # the prompt (length in ``msg.position``) goes through every stage; its ids follow to stage 1
    CYCLE = 2  # one SPD cycle: ``msg`` is the controller's GO / DISCARD message
    AR_STEP = 3  # AR through the pipeline: ``msg.token`` at ``msg.position`` through every stage in turn
    END = 4  # generation over: drop hidden states in transit, reset caches
    SHUTDOWN = 5


@dataclass(frozen=True)
class Wire:
    """One control message on the wire: ``[op, prompt, *ControlMessage.encode(n)]`` (static length 7 + n)."""

    op: Op
    prompt: int
    msg: ControlMessage

    @staticmethod
    def size(n: int) -> int:
        return 2 + 5 + n

    def encode(self, n: int) -> torch.Tensor:
        return torch.tensor([int(self.op), self.prompt] + self.msg.encode(n), dtype=torch.int64)

    @classmethod
    def decode(cls, t: torch.Tensor) -> "Wire":
        v = [int(x) for x in t.tolist()]
        try:
            return cls(Op(v[0]), v[1], ControlMessage.decode(v[2:]))
        except ValueError:
            raise PeerError(f"protocol: malformed control message {v}") from None


class Loopback:
    """Mailboxes between the ranks one process hosts. ``fail`` wakes every waiter with the error (a thread
    that died must not leave its peer waiting for the full timeout)."""

    POLL_S = 0.05

    def __init__(self) -> None:
        self._boxes: dict[tuple[int, int], queue.SimpleQueue] = {}
        self._lock = threading.Lock()
        self.failure: str | None = None

    def _box(self, src: int, dst: int) -> queue.SimpleQueue:
        with self._lock:
            return self._boxes.setdefault((src, dst), queue.SimpleQueue())

    def put(self, src: int, dst: int, item) -> None:
        self._box(src, dst).put(item)

    def get(self, src: int, dst: int, timeout_s: float, what: str):
        box, deadline = self._box(src, dst), time.monotonic() + timeout_s
        while True:
            if self.failure is not None:
                raise PeerError(f"rank {src} (same process) failed: {self.failure}")
            try:
                return box.get(timeout=self.POLL_S)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise PeerError(f"no {what} from rank {src} within {timeout_s:g} s") from None

    def fail(self, why: str) -> None:
        self.failure = why


class Comm:
    """This rank's view of the group: ``devices[r]`` is rank r's torch device string, ``procs[r]`` its process."""

    POLL_S = 2e-5  # how often a device-side receive (``_wait_on_device``) checks for completion

    def __init__(self, rank: int, world_size: int, devices: list[str], timeout_s: float,
                 procs: list[int] | None = None, loop: Loopback | None = None,
                 groups: dict[tuple[int, int], object] | None = None) -> None:
        self.rank, self.world_size, self.devices, self.timeout_s = rank, world_size, devices, timeout_s
        self.procs = procs if procs is not None else list(range(world_size))
        self.loop, self.groups = loop, groups or {}
        self.device = torch.device(devices[rank])
        self._timeout = datetime.timedelta(seconds=timeout_s)
        self._staging: dict[tuple, torch.Tensor] = {}
        self._rings: dict[tuple, list[list]] = {}  # (dst, shape, dtype) -> [[buffer, pending work], ...]
        self._ring_pos: dict[tuple, int] = {}

    @staticmethod
    def init(rank: int, world_size: int, devices: list[str], timeout_s: float,
             procs: list[int] | None = None) -> "Comm":
        """Join the group as process ``procs[rank]`` (MASTER_ADDR/MASTER_PORT from the environment); bounded by
        ``timeout_s``. With a process hosting several ranks, every process creates the same two-rank groups."""
        procs = procs if procs is not None else list(range(world_size))
        nproc = max(procs) + 1
        backend = "cpu:gloo,cuda:nccl" if any(d.startswith("cuda") for d in devices) else "gloo"
        if devices[rank].startswith("cuda"):
            torch.cuda.set_device(torch.device(devices[rank]))
        # No device_id: NCCL communicators are created lazily, one per pair that actually sends CUDA tensors,
        # so ranks sharing a GPU never end up in one NCCL communicator.
        dist.init_process_group(backend, rank=procs[rank], world_size=nproc,
                                timeout=datetime.timedelta(seconds=timeout_s))
        groups: dict[tuple[int, int], object] = {}
        loop = None
        if nproc < world_size:
            loop = Loopback()
            for a in range(world_size):  # the same order in every process (new_group is collective)
                for b in range(a + 1, world_size):
                    if procs[a] != procs[b]:
                        groups[(a, b)] = dist.new_group([procs[a], procs[b]],
                                                        timeout=datetime.timedelta(seconds=timeout_s))
        return Comm(rank, world_size, devices, timeout_s, procs, loop, groups)

    def view(self, rank: int) -> "Comm":
        """The same process group seen as another rank this process hosts (for its thread)."""
        assert self.procs[rank] == self.procs[self.rank]
        return Comm(rank, self.world_size, self.devices, self.timeout_s, self.procs, self.loop, self.groups)

    def local(self, peer: int) -> bool:
        """True when ``peer`` lives in this process (messages go through the loopback)."""
        return self.procs[peer] == self.procs[self.rank]

    def _dist_args(self, peer: int) -> dict:
        return {"group": self.groups.get((min(self.rank, peer), max(self.rank, peer)))}

    def set_timeout(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._timeout = datetime.timedelta(seconds=timeout_s)

    def close(self) -> None:
        if any(self.procs[r] == self.procs[self.rank] for r in range(self.rank)):
            return  # a rank hosted by another rank's process: that rank tears the group down
        if dist.is_initialized():
            dist.destroy_process_group()

    # -- data plane ---------------------------------------------------------------------------------
    def direct(self, peer: int) -> bool:
        """True when hidden states to/from ``peer`` go over NCCL (both on CUDA, different devices)."""
        a, b = self.devices[self.rank], self.devices[peer]
        return not self.local(peer) and a.startswith("cuda") and b.startswith("cuda") and torch.device(a) != torch.device(b)

    def _host(self, t: torch.Tensor, key: tuple) -> torch.Tensor:
        buf = self._staging.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
            self._staging[key] = buf
        return buf

    def send(self, t: torch.Tensor, dst: int) -> None:
        """Post a send and return; the caller may overwrite ``t`` at once.

        Sends are asynchronous because both gloo and NCCL sends complete only when the receiver posts its
        receive, and in the SPD dataflow stage s receives stage s-1's output one cycle later: a blocking send
        would stall stage s-1 (and, through it, rank 0) for a cycle, or deadlock. The data is copied into a
        ring of ``SEND_SLOTS`` buffers per (destination, shape); a slot is reused only after its previous send
        completed (waited with the receive timeout).
        """
        if self.local(dst):
            self.loop.put(self.rank, dst, _snapshot(t))
            return
        on_device = t.is_cuda and self.direct(dst)
        key = (dst, tuple(t.shape), t.dtype)
        ring = self._rings.setdefault(key, [])
        slot = self._ring_pos.get(key, 0)
        self._ring_pos[key] = (slot + 1) % SEND_SLOTS
        if len(ring) <= slot:
            buf = torch.empty(t.shape, dtype=t.dtype, device=t.device if on_device else "cpu",
                              pin_memory=t.is_cuda and not on_device)
            ring.append([buf, None])
        buf, work = ring[slot]
        if work is not None:
            self._wait(work, f"completion of an earlier send to rank {dst}")
        buf.copy_(t)  # device->host copies are synchronous: complete before gloo reads the buffer
        try:
            ring[slot][1] = dist.isend(buf, self.procs[dst], **self._dist_args(dst))
        except RuntimeError as exc:
            raise PeerError(f"send to rank {dst} failed: {_short(exc)}") from None

    def flush(self) -> None:
        """Wait for every posted send (end of a generation, before shutdown); drop the multi-token (prefill)
        buffers, whose shapes will not come back."""
        for key, ring in list(self._rings.items()):
            for entry in ring:
                if entry[1] is not None:
                    self._wait(entry[1], f"completion of a send to rank {key[0]}")
                    entry[1] = None
            if len(key[1]) >= 2 and key[1][-2] > 1:
                del self._rings[key], self._ring_pos[key]

    def recv(self, out: torch.Tensor, src: int) -> torch.Tensor:
        """Receive into ``out`` (its shape/dtype/device define the message), waiting at most ``timeout_s``."""
        if self.local(src):
            _restore(self.loop.get(src, self.rank, self.timeout_s, "hidden state"), out)
        elif self.direct(src):
            self._wait_on_device(dist.irecv(out, self.procs[src], **self._dist_args(src)), out.device,
                                 f"hidden state from rank {src}")
        elif not out.is_cuda:
            self._wait(dist.irecv(out, self.procs[src], **self._dist_args(src)), f"hidden state from rank {src}")
        else:
            host = self._host(out, ("recv", src, tuple(out.shape)))
            self._wait(dist.irecv(host, self.procs[src], **self._dist_args(src)), f"hidden state from rank {src}")
            out.copy_(host, non_blocking=False)
        return out

    def _wait_on_device(self, work, device: torch.device, what: str) -> None:
        """An NCCL receive, bounded by the timeout but without ``work.wait(timeout)``: receives waited that way
        returned 0.3-0.6 ms after the sender's send ended (rank 0's receive of the final hidden state, on the
        critical path every cycle; docs/perf-notes.md), most likely because with a timeout that call sleeps
        between completion checks. ``wait()`` without one only makes this thread's stream wait for the receive;
        an event behind it is polled here every ``POLL_S``. First run on GPUs in session 4 (4x H200): every
        run lossless, the receive's lag after the send down to the hop's own cost (docs/perf-notes.md)."""
        try:
            work.wait()
        except RuntimeError as exc:
            raise PeerError(f"no {what} or peer gone: {_short(exc)}") from None
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(device))
        deadline = time.monotonic() + self.timeout_s
        while not done.query():
            if time.monotonic() > deadline:
                raise PeerError(f"no {what} within {self.timeout_s:g} s or peer gone")
            time.sleep(self.POLL_S)

    def _wait(self, work, what: str) -> None:
        try:
            work.wait(timeout=self._timeout)
        except RuntimeError as exc:
            raise PeerError(f"no {what} within {self.timeout_s:g} s or peer gone: {_short(exc)}") from None

    # -- control plane (always CPU/gloo) ---------------------------------------------------------------
    def send_ints(self, values: torch.Tensor, dst: int) -> None:
        if self.local(dst):
            self.loop.put(self.rank, dst, _snapshot(values))
            return
        try:
            dist.send(values, self.procs[dst], **self._dist_args(dst))
        except RuntimeError as exc:
            raise PeerError(f"send to rank {dst} failed: {_short(exc)}") from None

    def recv_ints(self, n: int, src: int, what: str = "control message", dtype: torch.dtype = torch.int64
                  ) -> torch.Tensor:
        if self.local(src):
            got = self.loop.get(src, self.rank, self.timeout_s, what)[0]
            if got.numel() != n:
                raise PeerError(f"protocol: {what} from rank {src} has {got.numel()} values, expected {n}")
            return got
        out = torch.empty(n, dtype=dtype)
        self._wait(dist.irecv(out, self.procs[src], **self._dist_args(src)), f"{what} from rank {src}")
        return out

    def send_bytes(self, data: bytes, dst: int) -> None:
        """A blob over the control plane (trace gathering): its length, then the bytes."""
        self.send_ints(torch.tensor([len(data)], dtype=torch.int64), dst)
        self.send_ints(torch.frombuffer(bytearray(data), dtype=torch.uint8), dst)

    def recv_bytes(self, src: int, what: str) -> bytes:
        size = int(self.recv_ints(1, src, f"{what} size")[0])
        return bytes(self.recv_ints(size, src, what, dtype=torch.uint8).numpy())

    def broadcast(self, wire: Wire, n: int) -> None:
        """Rank 0 -> every stage (ranks 1..n), posted without waiting (see ``send``)."""
        t = wire.encode(n)
        for d in range(1, n + 1):
            self.send(t, d)

    def recv_wire(self, n: int) -> Wire:
        return Wire.decode(self.recv_ints(Wire.size(n), 0))


def _snapshot(t: torch.Tensor):
    """A copy for a rank of this process; on CUDA with an event marking when the copy is done (the receiver
    runs on another stream)."""
    copy = t.detach().clone()
    if not copy.is_cuda:
        return copy, None
    ev = torch.cuda.Event()
    ev.record(torch.cuda.current_stream(copy.device))
    return copy, ev


def _restore(item, out: torch.Tensor) -> None:
    copy, ev = item
    if copy.shape != out.shape:
        raise PeerError(f"protocol: hidden state of shape {tuple(copy.shape)}, expected {tuple(out.shape)}")
    if ev is not None:
        stream = torch.cuda.current_stream(out.device)
        stream.wait_event(ev)
        copy.record_stream(stream)  # the sender's allocator must not reuse it before this stream is done
    out.copy_(copy)


def _short(exc: BaseException) -> str:
    """First line of a backend error, without the C++ source location prefix."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if msg.startswith("[") and "] " in msg:
        msg = msg.split("] ", 1)[1]
    return msg[:300]
