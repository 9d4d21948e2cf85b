"""Process launching and fault containment.

Local runs: ``spawn_local`` starts the n+1 ranks as ``python -m reference.runtime.worker CONFIG`` with the
usual torch.distributed environment (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK), each in its own
session, with its stderr in ``RUNDIR/logs/process{p}.log`` (a process hosts one rank, or the controller and
stage 1 together). It watches them: the first rank to exit non-zero
makes it terminate the others (SIGTERM, then SIGKILL after a grace period) and report the failing rank's
one-line error. Children also die with the launcher (PR_SET_PDEATHSIG) and run a watchdog thread
(``Watchdog``) that ends the process when the main loop stops making progress, so no rank outlives a fault
by more than the configured timeout.

Under ``torchrun`` (RANK/WORLD_SIZE already set) nothing is spawned: the process is that rank.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ERROR_MARK = "spd-rank-error:"  # a rank's last words on stderr, one line, parsed by the launcher
INPUT_ERROR_EXIT = 2
PEER_ERROR_EXIT = 4  # a rank that failed because a peer did (its error is a consequence, not the cause)
GRACE_S = 3.0
PIN_ENV = "SPD_PIN_CPUS"  # "0,1,2": the CPUs a spawned worker pins itself to (spd run --pin-cpus)


@dataclass
class LaunchResult:
    returncode: int  # 0 ok, 2 bad input found by a rank, 1 otherwise
    message: str  # one line: why it failed ("" when ok)


def torchrun_env() -> tuple[int, int] | None:
    """(rank, world_size) when launched by torchrun (or any launcher that sets them), else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        try:
            return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        except ValueError:
            return None
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_blocks(processes: int) -> list[set[int]]:
    """The CPUs this process may use, split into ``processes`` equal contiguous blocks (in CPU-number order, so
    on a usual Linux numbering a block stays on one socket), the remainder left unused; raises InputError where
    CPUs cannot be pinned or are fewer than the processes. Blocks go to processes in order, whatever GPU each
    drives: on a multi-socket host a process may land on the socket far from its GPU (`nvidia-smi topo -m`
    shows each GPU's CPU affinity)."""
    from sim.errors import InputError

    if not hasattr(os, "sched_setaffinity"):
        raise InputError("--pin-cpus: this platform cannot pin processes to CPUs (Linux only)")
    cpus = sorted(os.sched_getaffinity(0))
    per = len(cpus) // processes
    if per < 1:
        raise InputError(f"--pin-cpus: {processes} processes but only {len(cpus)} CPU(s) to pin them to")
    return [set(cpus[i * per:(i + 1) * per]) for i in range(processes)]


def pin_from_env() -> None:
    """In a spawned worker, before anything starts a thread: pin to the CPUs the launcher chose (threads created
    later inherit them)."""
    if os.environ.get(PIN_ENV):
        os.sched_setaffinity(0, {int(c) for c in os.environ[PIN_ENV].split(",")})


def spawn_local(config_path: Path, world_size: int, log_dir: Path, threads_per_rank: int | None = None,
                env_extra: dict[str, str] | None = None, poll_s: float = 0.05,
                labels: list[str] | None = None, cpu_sets: list[set[int]] | None = None) -> LaunchResult:
    """Run every process locally and wait; on any failure every process is gone before this returns.
    ``labels[p]`` names what process p hosts in error messages (default "rank p"); ``cpu_sets[p]``: the CPUs
    process p is pinned to (``cpu_blocks``; None: wherever the OS schedules it)."""
    for attempt in range(3):
        res = _spawn_once(config_path, world_size, log_dir, threads_per_rank, env_extra, poll_s, labels, cpu_sets)
        # free_port() can race with another program taking the port before rank 0 listens: try another one
        if res.returncode == 0 or "EADDRINUSE" not in res.message:
            return res
    return res


def _spawn_once(config_path: Path, world_size: int, log_dir: Path, threads_per_rank: int | None,
                env_extra: dict[str, str] | None, poll_s: float, labels: list[str] | None,
                cpu_sets: list[set[int]] | None) -> LaunchResult:
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    procs: list[subprocess.Popen] = []
    logs = []
    base = dict(os.environ)
    base.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world_size),
                 "NCCL_NVLS_ENABLE": "0", "SPD_LAUNCHER_PID": str(os.getpid()),
                 "TORCH_NCCL_ASYNC_ERROR_HANDLING": "3"})
    if threads_per_rank is not None:
        base["OMP_NUM_THREADS"] = str(threads_per_rank)
    base.update(env_extra or {})
    try:
        for r in range(world_size):
            env = dict(base, RANK=str(r), LOCAL_RANK=str(r))
            log = open(log_dir / f"process{r}.log", "wb")
            logs.append(log)
            if cpu_sets:  # the worker pins itself first thing, before torch starts any thread (worker.py)
                env[PIN_ENV] = ",".join(map(str, sorted(cpu_sets[r])))
            procs.append(subprocess.Popen([sys.executable, "-m", "reference.runtime.worker", str(config_path)],
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        return _watch(procs, log_dir, poll_s, labels or [process_label([p]) for p in range(world_size)])
    except KeyboardInterrupt:
        _terminate(procs)
        raise
    finally:
        _terminate(procs)
        for log in logs:
            log.close()


def process_label(ranks: list[int]) -> str:
    """What a process hosts, for messages: "rank 2 (stage 2)", "ranks 0+1 (controller, stage 1)"."""
    roles = ", ".join("controller" if r == 0 else f"stage {r}" for r in ranks)
    return f"rank{'s' if len(ranks) > 1 else ''} {'+'.join(map(str, ranks))} ({roles})"


def _watch(procs: list[subprocess.Popen], log_dir: Path, poll_s: float, labels: list[str]) -> LaunchResult:
    while True:
        codes = [p.poll() for p in procs]
        failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            # Give the others a moment to report their own view, then stop them. The culprit: a rank that died
            # from a signal on its own (its peers then fail with connection errors), else the first to fail.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                time.sleep(poll_s)
            signalled = [r for r, p in enumerate(procs) if p.poll() is not None and p.returncode < 0]
            causes = [r for r, p in enumerate(procs) if p.poll() not in (None, 0, PEER_ERROR_EXIT)]
            culprit = signalled[0] if signalled else causes[0] if causes else failed[0]
            _terminate(procs)
            return _diagnose(procs, culprit, log_dir, labels)
        if all(c == 0 for c in codes):
            return LaunchResult(0, "")
        time.sleep(poll_s)


def _diagnose(procs: list[subprocess.Popen], first: int, log_dir: Path, labels: list[str]) -> LaunchResult:
    """One line: the first failing process and its error; an input error anywhere wins (exit 2)."""
    msgs = {r: _last_error(log_dir / f"process{r}.log") for r in range(len(procs))}
    for r, p in enumerate(procs):
        if p.returncode == INPUT_ERROR_EXIT and msgs[r]:
            return LaunchResult(2, msgs[r])
    code = procs[first].returncode
    how = f"killed by signal {-code} ({_signame(-code)})" if code < 0 else f"exit status {code}"
    detail = msgs[first] or next((f"{labels[r]}: {m}" for r, m in msgs.items() if m), "no error message")
    return LaunchResult(1, f"{labels[first]} failed ({how}): {detail}; logs in {log_dir}")


def _last_error(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith(ERROR_MARK):
            return line[len(ERROR_MARK):].strip()
    return ""


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "?"


def _terminate(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each rank's session, SIGKILL what is left after GRACE_S. Only our own children's groups."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        _killpg(p, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(p.poll() is None for p in alive):
        time.sleep(0.02)
    for p in procs:
        if p.poll() is None:
            _killpg(p, signal.SIGKILL)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for p in procs:  # helpers a rank started in its session (compile workers...) go too
        _killpg(p, signal.SIGKILL)


def _killpg(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)  # the child is its session's leader: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------------------- in the ranks
def die_with_parent() -> None:
    """Linux: SIGKILL this process when the launcher dies (no orphans even if it is SIGKILLed)."""
    if not sys.platform.startswith("linux") or "SPD_LAUNCHER_PID" not in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != int(os.environ["SPD_LAUNCHER_PID"]):  # launcher already gone before prctl
        os._exit(1)


class Watchdog:
    """A daemon thread that ends the process (exit 3, one-line error) when

    - the main thread makes no progress for ``limit_s`` (``tick()`` marks progress; ``phase(what, limit_s)``
      sets the bound of a phase such as loading or CUDA-graph capture); this also bounds a hung NCCL receive,
      whose timeout is otherwise enforced only by NCCL's own watchdog;
    - a peer stops answering: with ``start_heartbeat`` every rank bumps a counter in the rendezvous store
      (its own TCP client, so the main thread's traffic is untouched) every ``HEARTBEAT_S`` and checks the
      others'. A stopped, dead or wedged peer is detected within ``heartbeat_limit_s`` even while this rank
      is busy loading a model, when no receive timeout is armed yet.
    """

    HEARTBEAT_S = 0.5

    def __init__(self, rank: int, limit_s: float, labels: list[str] | None = None) -> None:
        """``rank``: this process's index; ``labels[p]`` names what process p hosts in messages."""
        self.rank, self.limit_s = rank, limit_s
        self.labels = labels
        self._last = time.monotonic()
        self._what = "start-up"
        self._stop = threading.Event()
        self._store = None
        self._peers: dict[int, tuple[int, float]] = {}
        self._checking = False
        self.heartbeat_limit_s = 20.0
        self._thread = threading.Thread(target=self._run, name="spd-watchdog", daemon=True)
        self._thread.start()

    def tick(self, what: str | None = None) -> None:
        self._last = time.monotonic()
        if what is not None:
            self._what = what

    def phase(self, what: str, limit_s: float) -> None:
        self.limit_s = limit_s
        self.tick(what)

    def start_heartbeat(self, world_size: int, limit_s: float) -> None:
        """Needs MASTER_ADDR/MASTER_PORT (the process group's store). Call after joining the group."""
        import datetime

        import torch.distributed as dist

        self.heartbeat_limit_s = limit_s
        self._store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                    timeout=datetime.timedelta(seconds=limit_s), wait_for_workers=False)
        now = time.monotonic()
        self._peers = {r: (-1, now) for r in range(world_size) if r != self.rank}
        self._checking = True

    def stop_checking(self) -> None:
        """Peers may now finish and stop beating (the run's last exchange has begun)."""
        self._checking = False

    def stop(self) -> None:
        self._stop.set()

    def _label(self, p: int) -> str:
        return self.labels[p] if self.labels and p < len(self.labels) else process_label([p])

    def _die(self, msg: str) -> None:
        sys.stderr.write(f"{ERROR_MARK} {self._label(self.rank)}: {msg}\n")
        sys.stderr.flush()
        os._exit(3)

    def _run(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            idle = time.monotonic() - self._last
            if idle > self.limit_s:
                self._die(f"no progress for {idle:.0f} s during {self._what} (limit {self.limit_s:g} s); "
                          "a peer is dead or hung")
            if self._store is not None:
                self._heartbeat()

    def _heartbeat(self) -> None:
        try:
            self._store.add(f"spd/hb/{self.rank}", 1)
            if not self._checking:
                return
            now = time.monotonic()
            for r, (seen, since) in list(self._peers.items()):
                count = self._store.add(f"spd/hb/{r}", 0)
                if count != seen:
                    self._peers[r] = (count, now)
                elif now - since > self.heartbeat_limit_s:
                    self._die(f"{self._label(r)} stopped answering: no heartbeat for {now - since:.0f} s")
        except Exception as exc:  # the store lives in rank 0: losing it means rank 0 is gone or wedged
            if self._checking and not self._stop.is_set():
                self._die(f"lost contact with the rendezvous store on rank 0 ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})")
