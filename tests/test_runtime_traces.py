"""Traces of a real CPU run: the torch-free loader in sim/, clock alignment records, hop matching, the
Chrome-trace export, and the loader's refusal of things that are not (supported) traces."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.errors import InputError
from sim.traces import load_trace, to_chrome_trace

TINY = ('random:custom:{"vocab_size":97,"hidden_size":32,"intermediate_size":64,"num_layers":6,"num_heads":4,'
        '"num_kv_heads":2,"head_dim":8,"max_seq_len":128}')
REPO = Path(__file__).resolve().parents[1]
N = 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("trace")
    prompts = d / "p.jsonl"
    prompts.write_text(json.dumps({"question_id": "a", "prompt_ids": [3, 1, 4, 1, 5, 9]}) + "\n"
                       + json.dumps({"question_id": "b", "prompt_ids": [2, 7, 1, 8]}) + "\n")
    out = d / "run"
    assert main(["run", "--method", "spd", "--stages", str(N), "--draft", "replay", "--alpha", "0.6",
                 "--model", TINY, "--prompts", str(prompts), "--max-new-tokens", "14", "--out", str(out)]) == 0
    return out


def test_trace_loads_and_obeys_the_cycle_count(run_dir):
    t = load_trace(run_dir)
    assert (t.version, t.method, t.n) == (1, "spd", N)
    assert [p.question_id for p in t.prompts] == ["a", "b"]
    assert t.cycle_count_violations() == []
    assert t.K == t.N + len(t.prompts) * (N - 2) + (N - 1) * t.R
    assert t.R > 0 and 0 < sum(t.accept_sequence()) < len(t.accept_sequence())
    # the per-cycle records carry the same story: one record per cycle, commits add up to N minus prefill tokens
    assert len(t.cycles) == t.K
    assert sum(len(c.committed) for c in t.cycles) == t.N - len(t.prompts)
    assert sum(c.event == "reject" for c in t.cycles) == sum(p.rejects for p in t.prompts)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["cycles"] == t.K and summary["refill_rejects"] == t.R
    assert t.decode_tokens_per_s == pytest.approx(summary["decode_tokens_per_s"])


def test_header_stamps_the_environment(run_dir):
    h = load_trace(run_dir).header
    for key in ("torch", "python", "cuda", "driver", "git_commit", "hostname"):
        assert key in h["env"]
    assert h["model"]["num_layers"] == 6 and h["dtype"] == "float32"
    assert h["stage_layers"] == [[0, 2], [2, 4], [4, 6]]
    assert h["draft"]["source"] == "replay" and h["draft"]["alpha"] == 0.6
    assert len(h["device_names"]) == N + 1 and h["rank_devices"] == ["cpu"] * (N + 1)


def test_pin_cpus_gives_each_process_its_own_block(run_dir, tmp_path):
    """`--pin-cpus`: every process runs on its own equal block of the launch's CPUs, and the header says which
    (`rank_cpus`, one entry per rank: the controller shares stage 1's process on CPU, so its block too); without
    it every process may run anywhere. Fewer CPUs than processes: one-line input error (exit 2)."""
    import os

    from reference.runtime.launch import cpu_blocks

    free = load_trace(run_dir).header
    assert free["pin_cpus"] is False and len(set(free["rank_cpus"])) == 1  # unpinned: all the same set
    procs = 2  # n=2 on CPU: the controller hosts stage 1, stage 2 is its own process (CI has 2 cores)
    if len(os.sched_getaffinity(0)) < procs:
        pytest.skip(f"{len(os.sched_getaffinity(0))} CPU(s): cannot pin {procs} processes")
    out = tmp_path / "pinned"
    assert main(["run", "--method", "spd", "--stages", "2", "--draft", "replay", "--alpha", "0.6", "--model", TINY,
                 "--prompts", str(run_dir.parent / "p.jsonl"), "--max-new-tokens", "6", "--pin-cpus", "--out", str(out)]) == 0
    h = load_trace(out).header

    def cpus(ranges: str) -> set[int]:  # "0-3,8" -> {0, 1, 2, 3, 8}
        out = set()
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
        return out

    by_process = [cpus(h["rank_cpus"][h["rank_processes"].index(p)]) for p in range(procs)]
    assert h["pin_cpus"] is True and by_process == cpu_blocks(procs), (h["rank_cpus"], cpu_blocks(procs))
    assert not by_process[0] & by_process[1]  # disjoint blocks
    assert h["rank_cpus"][0] == h["rank_cpus"][1]  # controller and stage 1: one process
    assert cpus(free["rank_cpus"][0]) == set(os.sched_getaffinity(0))  # unpinned: every CPU of the launch
    with pytest.raises(InputError, match="--pin-cpus: 1000 processes but only"):
        cpu_blocks(1000)


def test_clock_offsets_recorded_for_every_rank(run_dir):
    t = load_trace(run_dir)
    clocks = {c["rank"]: c for c in t.clocks}
    assert set(clocks) == set(range(N + 1))
    for r in range(1, N + 1):
        c = clocks[r]
        assert c["rtt_min_ns"] > 0
        # one host, one CLOCK_MONOTONIC: the measured offset and what is left after correcting it are within
        # the measurement's own uncertainty (half the best round trip) plus scheduling noise
        assert abs(c["offset_ns"]) < 5_000_000 and abs(c["residual_ns"]) < 5_000_000


def test_durations_for_calibration(run_dir):
    t = load_trace(run_dir)
    for s in range(N):
        assert all(ms > 0 for ms in t.stage_forward_ms(s)) and t.stage_forward_ms(s)
    assert t.draft_ms() and t.verify_ms() and t.control_ms() and t.cycle_ms()
    # Ranks are separate processes on a loaded 2-core machine: the aligned clocks agree to within the alignment's
    # own uncertainty (sub-ms, see test_clock_offsets_recorded_for_every_rank), so allow that much below zero.
    slack_ms = 1.0
    for link in ("1->2", "2->3", "3->0"):
        hops = t.hop_ms(link)
        assert hops and all(h >= -slack_ms for h in hops), link
    # events are on one aligned time line: every hop's receive ends after its send started
    assert all(h.recv.t1_ns >= h.send.t0_ns - slack_ms * 1e6 for h in t.hops())
    stats = t.stats()
    assert {"cycle", "draft", "verify", "hop", "stage0_forward"} <= set(stats)


def test_chrome_trace_export(run_dir):
    t = load_trace(run_dir)
    doc = to_chrome_trace(t)
    assert json.loads(json.dumps(doc)) == doc
    phases = {e["ph"] for e in doc["traceEvents"]}
    assert {"M", "X", "s", "f"} <= phases
    assert {e["pid"] for e in doc["traceEvents"] if e["ph"] == "X"} == set(range(N + 1))
    written = json.loads((run_dir / "trace.perfetto.json").read_text())
    assert len(written["traceEvents"]) == len(doc["traceEvents"])


def test_loader_is_torch_free(run_dir):
    code = ("import sys; from sim.traces import load_trace; t = load_trace(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(t.K)")
    r = subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == load_trace(run_dir).K


@pytest.mark.parametrize("content,needle", [
    ("", "empty"),
    ("not json\n", "not JSON"),
    (json.dumps({"type": "header", "format": "something-else", "version": 1}) + "\n", "not an spd-trace header"),
    (json.dumps({"type": "header", "format": "spd-trace", "version": 99, "method": "spd", "n_stages": 2}) + "\n",
     "version 99 not supported"),
    (json.dumps({"type": "header", "format": "spd-trace", "version": 1, "method": "spd", "n_stages": 2}) + "\n"
     + json.dumps({"type": "event", "rank": 0}) + "\n", "malformed event"),
])
def test_not_a_trace_is_input_error(tmp_path, content, needle):
    (tmp_path / "trace.jsonl").write_text(content)
    with pytest.raises(InputError, match=needle):
        load_trace(tmp_path)


def test_missing_trace_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no trace file"):
        load_trace(tmp_path / "nowhere")


def test_ranks_on_one_gpu_share_a_process():
    """CUDA: one process per GPU used (its ranks are threads); CPU: the controller hosts stage 1 and every
    other stage is its own process; --process-per-rank: one each. The trace header's layout names it."""
    from reference.runtime.config import RunConfig
    from sim.traces import header_process_layout, process_layout

    def cfg(placement, **kw):
        return RunConfig(method="spd", stages=len(placement) - 1, model="random", prompts="-", out="-",
                         device="cuda", placement=placement, **kw)

    assert cfg([0, 0, 0, 1, 1]).rank_processes() == [0, 0, 0, 1, 1]
    assert cfg([1, 0, 1]).rank_processes() == [0, 1, 0]
    assert cfg([0, 0, 1], process_per_rank=True).rank_processes() == [0, 1, 2]
    cpu = RunConfig(method="spd", stages=3, model="random", prompts="-", out="-")
    assert cpu.rank_processes() == [0, 0, 1, 2]
    devs = ["cuda:0", "cuda:0", "cuda:0", "cuda:1"]
    assert process_layout(devs, [0, 0, 0, 1]) == "per-device"
    assert process_layout(devs, [0, 1, 2, 3]) == "per-rank"
    assert process_layout(devs, [0, 0, 1, 2]) == "mixed"
    assert header_process_layout({"rank_devices": devs, "rank_processes": [0, 0, 1, 2]}) == "mixed"
    assert header_process_layout({"controller_process": "separate"}) == "per-rank"


def test_header_names_the_layout_and_eager_steps(run_dir):
    from sim.calibration.extract import _kernels

    t = load_trace(run_dir)
    h = t.header
    assert h["process_layout"] in ("per-device", "mixed") and h["rank_processes"][:2] == [0, 0]
    # rank 0 launches the head on the last stage's output before it receives the anchors of earlier stages
    heads = t.select("head", 0)
    assert heads and all(e.duration_ms >= 0 for e in heads)
    assert _kernels({"kernels": "fused", "rank_devices": ["cuda:0"], "cuda_graphs": False}) == "fused+eager"
    assert _kernels({"kernels": "fused", "rank_devices": ["cuda:0"], "cuda_graphs": True}) == "fused"
    assert _kernels({"kernels": "reference", "rank_devices": ["cpu"], "cuda_graphs": False}) == "reference"
