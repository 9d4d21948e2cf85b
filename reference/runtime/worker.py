"""One rank's main: ``python -m reference.runtime.worker RUNDIR/config.json`` (RANK/WORLD_SIZE in the env).

Sequence: join the group -> load this rank's part of the model (and capture CUDA graphs) -> ready barrier ->
clock alignment -> prompts (rank 0 drives, stages follow its control messages) -> drift measurement ->
traces gathered to rank 0 -> rank 0 writes the run directory. Errors end the process with one line
``spd-rank-error: ...`` on stderr (exit 2 for bad input, 1 otherwise) that the launcher reports.
"""
from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from .launch import pin_from_env

pin_from_env()  # spd run --pin-cpus: before torch (imported by .comm) can start a thread

from sim.errors import InputError  # noqa: E402

from .comm import PeerError  # noqa: E402
from .config import RunConfig  # noqa: E402
from .launch import ERROR_MARK, INPUT_ERROR_EXIT, PEER_ERROR_EXIT, Watchdog, die_with_parent, torchrun_env  # noqa: E402


def run_rank(cfg: RunConfig, rank: int, world_size: int, prompts: list[dict]) -> int:
    """Run as ``rank``; returns the exit status (never raises for expected failures)."""
    die_with_parent()
    labels = cfg.process_labels() if cfg.method != "ar" else ["rank 0 (ar)"]
    me = labels[rank] if rank < len(labels) else f"process {rank}"
    wd = Watchdog(rank, cfg.load_timeout_s, labels)
    try:
        from .roles import run_role

        run_role(cfg, rank, world_size, prompts, wd)
        return 0
    except Exception as exc:
        return report_failure(exc, me)
    finally:
        wd.stop()


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def report_failure(exc: Exception, who: str) -> int:
    """The one line the launcher reads for a failed rank (``who``: what failed), and the exit status: bad input
    (the message alone), a peer's failure seen here, or a bug (traceback kept in the log)."""
    if isinstance(exc, InputError):
        _last_words(f"{exc}")
        return INPUT_ERROR_EXIT
    if isinstance(exc, PeerError):
        # Every thread's stack into the log first: when a peer timed out, the other rank this process hosts
        # may be the one that hung, and only its stack shows where.
        faulthandler.dump_traceback(all_threads=True)
        _last_words(f"{who}: {exc}")
        return PEER_ERROR_EXIT
    traceback.print_exc()
    _last_words(f"{who}: {one_line(exc)}")
    return 1


def _last_words(msg: str) -> None:
    sys.stderr.write(f"{ERROR_MARK} {msg}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m reference.runtime.worker RUNDIR/config.json\n")
        return 2
    env = torchrun_env()
    if env is None:
        sys.stderr.write("reference.runtime.worker: RANK and WORLD_SIZE must be set (spd run sets them)\n")
        return 2
    # `kill -USR1 <pid>` dumps every thread's Python stack into the rank's log: for diagnosing a hang.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    doc = json.loads(Path(argv[0]).read_text())
    cfg = RunConfig(**doc["config"])
    code = run_rank(cfg, env[0], env[1], doc["prompts"])
    sys.stdout.flush()
    sys.stderr.flush()
    # On failure skip interpreter teardown: a process group with a dead peer can block in its destructor.
    if code != 0:
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
