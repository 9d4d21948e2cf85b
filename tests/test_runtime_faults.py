"""Faults and bad input for `spd run`: a killed or hung stage ends the whole run quickly with a clear message and
no process left behind; bad input is one line and exit status 2, before any rank starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.cli import main

TINY = ('random:custom:{"vocab_size":97,"hidden_size":32,"intermediate_size":64,"num_layers":6,"num_heads":4,'
        '"num_kv_heads":2,"head_dim":8,"max_seq_len":%d}')
REPO = Path(__file__).resolve().parents[1]


def _prompts(tmp_path: Path, prompts=([5, 9, 12, 7],)) -> str:
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps({"prompt_ids": ids}) + "\n" for ids in prompts))
    return str(p)


def _workers_of(config_path: str) -> list[int]:
    """PIDs of live rank processes of one run (matched by their config path on the command line)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        if b"reference.runtime.worker" in cmd and config_path.encode() in cmd and ") Z " not in stat:
            pids.append(int(d))
    return pids


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for kv in env:
        if kv.startswith(b"RANK="):
            return int(kv[5:])
    return None


def _start_long_run(tmp_path: Path, timeout_s: int, separate: bool = False) -> tuple[subprocess.Popen, str]:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sim.cli", "run", "--method", "spd", "--stages", "2", "--draft", "replay",
           "--alpha", "0.9", "--model", TINY % 4096, "--prompts", _prompts(tmp_path), "--max-new-tokens", "4000",
           "--out", str(out), "--timeout-s", str(timeout_s), "--trace", "cycle"]
    cmd += ["--process-per-rank"] if separate else []
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, str(out / "config.json")


def _decoding_pid(proc: subprocess.Popen, config_path: str, rank: int, processes: int, within_s: float = 90) -> int:
    """PID of process ``rank`` once every process has printed that it is decoding (a fault then hits the decode
    loop, where only receive timeouts, the watchdog and the heartbeat can notice it)."""
    logs = Path(config_path).parent / "logs"
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        ready = [f for f in logs.glob("process*.log") if "decoding" in f.read_text(errors="replace")]
        if len(ready) == processes:
            for pid in _workers_of(config_path):
                if _rank_of(pid) == rank:
                    return pid
        time.sleep(0.1)
    raise AssertionError("the run never started decoding")


def _finish(proc: subprocess.Popen, limit_s: float) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"spd run still running {limit_s} s after the fault")
    return proc.returncode, err, time.monotonic() - t0


@pytest.mark.parametrize("fault,separate", [("kill", False), ("hang", False), ("kill", True), ("hang", True)])
def test_dead_or_hung_stage_ends_the_run(tmp_path, fault, separate):
    """Stage 2 (rank 2) dies or hangs; it is process 2 with a separate controller, else process 1 (the
    controller hosts stage 1 in process 0)."""
    proc, config_path = _start_long_run(tmp_path, timeout_s=5, separate=separate)
    pid = _decoding_pid(proc, config_path, rank=2 if separate else 1, processes=3 if separate else 2)
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    code, err, took = _finish(proc, limit_s=60)
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rank" in lines[0], err
    if fault == "kill":
        assert "rank 2" in lines[0] and "signal 9" in lines[0], lines[0]
    assert took < 45, f"took {took:.1f} s"
    time.sleep(0.5)
    assert _workers_of(config_path) == [], "rank processes left behind"


# ---------------------------------------------------------------------------------------------- bad input
def _bad(tmp_path: Path, capsys, *args: str, prompts=([5, 9, 12, 7],)) -> str:
    code = main(["run", "--prompts", _prompts(tmp_path, prompts), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert not (tmp_path / "o" / "logs").exists(), "a rank was started for bad input"
    return lines[0]


@pytest.mark.parametrize("args,prompts,needle", [
    (["--model", TINY % 128], ([],), "empty prompt"),
    (["--model", TINY % 32, "--max-new-tokens", "30"], ([1, 2, 3, 4],), "exceeds the context"),
    (["--model", TINY % 128, "--stages", "7"], ([1, 2],), "do not fit"),
    (["--model", TINY % 128, "--method", "spd", "--stages", "1"], ([1, 2],), "at least 2 stages"),
    (["--model", TINY % 128, "--device", "tpu"], ([1, 2],), "unknown device"),
    (["--model", TINY % 128, "--device", "cuda"], ([1, 2],), "cuda"),
    (["--model", TINY % 128, "--placement", "0,0"], ([1, 2],), "--placement"),
    (["--model", TINY % 128, "--placement", "0,x,1"], ([1, 2],), "--placement"),
    (["--model", "/nonexistent/model.gguf"], ([1, 2],), "no such model"),
    (["--model", "random:no-such-shape"], ([1, 2],), "unknown model shape"),
    (["--model", TINY % 128], ([1, 2, 500],), "outside the vocabulary"),
    (["--model", TINY % 128, "--draft", "replay", "--temperature", "0.7"], ([1, 2],), "replay"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, prompts, needle):
    line = _bad(tmp_path, capsys, *args, prompts=prompts)
    assert needle in line, line


def test_missing_prompt_file(tmp_path, capsys):
    code = main(["run", "--model", TINY % 128, "--prompts", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not found" in err[0]


def test_bad_input_through_the_real_cli(tmp_path):
    """The installed entry point: exit status 2, one line, no traceback."""
    r = subprocess.run([sys.executable, "-m", "sim.cli", "run", "--model", TINY % 128, "--stages", "9",
                        "--prompts", _prompts(tmp_path), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_failing_rank_thread_ends_the_run_at_once(tmp_path):
    """Stage 1 runs as a thread of the controller's process: its failure ends that process (and so the run)
    right away with its own error, not after a receive timeout elsewhere."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sim.cli", "run", "--method", "spd", "--stages", "2", "--draft", "replay",
           "--alpha", "0.9", "--model", TINY % 512, "--prompts", _prompts(tmp_path), "--max-new-tokens", "50",
           "--out", str(out), "--timeout-s", "20", "--trace", "cycle"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SPD_FAULT_RANK": "1"})
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rank 1" in lines[0] and "injected fault" in lines[0], r.stderr
    assert time.monotonic() - t0 < 60
    assert _workers_of(str(out / "config.json")) == []


def test_prefill_launch_signal_only_where_rank0_would_post_a_spinning_receive_first():
    """Rank 0 waits for stage 1's prefill launch only when it hosts stage 1 and gets nothing from it at prefill
    (AR pipeline); with anchors from stage 0 (SPD) the receive order already serialises the two."""
    from reference.runtime.comm import Comm
    from reference.runtime.stage import prefill_needs_launch_signal
    from reference.spd_controller import PipelinePlan

    ar_plan = PipelinePlan(8, ((0, 4), (4, 8)))             # anchors (0,): stage 0 reports nothing
    spd_plan = PipelinePlan(8, ((0, 4), (4, 8)), (0, 2, 6))  # stage 0 reports anchor 2
    shared = Comm(0, 3, ["cpu"] * 3, 1.0, procs=[0, 0, 1])
    apart = Comm(0, 3, ["cpu"] * 3, 1.0, procs=[0, 1, 2])
    assert prefill_needs_launch_signal(shared, ar_plan)
    assert not prefill_needs_launch_signal(shared, spd_plan)
    assert not prefill_needs_launch_signal(apart, ar_plan)


def test_eager_ar_pipeline_steps_wait_for_stage1_launch_graphed_ones_do_not():
    """Each eager AR-pipeline step of a shared process waits for stage 1's launch (session 5: an eager step
    blocked in a launch while rank 0's receive spun); graphed steps and SPD keep their timing."""
    from reference.runtime.comm import Comm
    from reference.runtime.stage import step_needs_launch_signal
    from reference.spd_controller import PipelinePlan

    ar_plan = PipelinePlan(8, ((0, 4), (4, 8)))
    spd_plan = PipelinePlan(8, ((0, 4), (4, 8)), (0, 2, 6))
    shared = Comm(0, 3, ["cpu"] * 3, 1.0, procs=[0, 0, 1])
    apart = Comm(0, 3, ["cpu"] * 3, 1.0, procs=[0, 1, 2])
    assert step_needs_launch_signal(shared, ar_plan, step_graphed=False)
    assert not step_needs_launch_signal(shared, ar_plan, step_graphed=True)
    assert not step_needs_launch_signal(shared, spd_plan, step_graphed=False)
    assert not step_needs_launch_signal(apart, ar_plan, step_graphed=False)
