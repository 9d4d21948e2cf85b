"""The body of a rank: set-up, the role's loop, trace gathering, and (rank 0) writing the run directory."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import torch

from sim.errors import InputError
from sim.traces import process_layout

from ..spd_controller import stage_bounds
from ..verify import SamplingConfig
from . import clock
from .comm import Comm, PeerError
from .config import RunConfig
from .controller import ControllerRank, PromptResult
from .launch import Watchdog
from .output import summary_line, write_run
from .parts import keep_only, load_target, make_draft, make_plan, plan_anchors
from .tracing import Recorder, device_name, environment, host_info
from .worker import one_line, report_failure


_SETUP_LOCK = threading.Lock()  # ranks of one process load and capture CUDA graphs one at a time


class _QuietWatchdog:
    """The watchdog interface for a rank hosted in another rank's thread: the process's own watchdog and its
    heartbeat already cover the process, and that rank's receives are bounded."""

    def tick(self, what: str | None = None) -> None:
        pass

    def phase(self, what: str, limit_s: float) -> None:
        pass

    def stop_checking(self) -> None:
        pass


def run_role(cfg: RunConfig, proc: int, nproc: int, prompts: list[dict], wd: Watchdog) -> None:
    """The body of process ``proc``: the rank(s) it hosts (``RunConfig.rank_processes``: on CUDA the ranks
    placed on one GPU; the first runs in the main thread, the others each in a thread on its own CUDA stream)."""
    if nproc != cfg.process_count:
        raise InputError(f"world size {nproc} does not match the run: {cfg.method} with {cfg.stages} stage(s) "
                         f"needs {cfg.process_count} process(es) (ranks on one GPU share a process; --process-per-rank "
                         f"gives every rank its own)")
    devices, procs = cfg.rank_devices(), cfg.rank_processes()
    mine = [r for r in range(len(procs)) if procs[r] == proc]
    device = torch.device(devices[mine[0]])
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    if cfg.method == "ar":
        return _run_single(cfg, prompts, wd, Recorder(0, cfg.trace, device), SamplingConfig(cfg.temperature, cfg.seed),
                           device)

    # Ranks start together, so joining is bounded like any other wait (a rank stuck before it joins).
    join_s = max(cfg.timeout_s, 30.0)
    wd.phase("joining the process group", join_s + 10)
    comm = Comm.init(mine[0], cfg.world_size, devices, join_s, procs)
    wd.start_heartbeat(nproc, cfg.heartbeat_s)
    hosted = [_HostedRank(cfg, comm.view(r), prompts) for r in mine[1:]]
    if hosted:
        sys.setswitchinterval(2e-4)  # a waiting rank thread gets the GIL within 0.2 ms, not the default 5 ms
    for h in hosted:
        h.start()
    try:
        _run_rank(cfg, comm, prompts, wd, stream_clock=bool(hosted))
    except BaseException as exc:
        # No group teardown here: a hosted thread may still be inside a collective call; the worker exits
        # the process without interpreter teardown on failure.
        if comm.loop is not None:
            comm.loop.fail(one_line(exc))
        raise
    for h in hosted:
        h.join(cfg.timeout_s + 10)
        if h.is_alive():  # (a thread that failed has already ended the process)
            raise PeerError(f"rank {h.comm.rank} (same process) did not finish within {cfg.timeout_s + 10:g} s")
    comm.close()


class _HostedRank(threading.Thread):
    """A rank that lives in another rank's process: its own thread, its own CUDA stream."""

    def __init__(self, cfg: RunConfig, comm: Comm, prompts: list[dict]) -> None:
        super().__init__(name=f"spd-rank{comm.rank}", daemon=True)
        self.cfg, self.comm, self.prompts = cfg, comm, prompts

    def run(self) -> None:
        dev = self.comm.device
        try:
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            with torch.cuda.stream(torch.cuda.Stream(dev)) if dev.type == "cuda" else contextlib.nullcontext():
                _run_rank(self.cfg, self.comm, self.prompts, _QuietWatchdog(), stream_clock=True)
        except Exception as exc:  # end the whole process now: the launcher then stops every other one
            self.comm.loop.fail(one_line(exc))
            code = report_failure(exc, f"rank {self.comm.rank}")
            sys.stdout.flush()
            os._exit(code)


def _run_rank(cfg: RunConfig, comm: Comm, prompts: list[dict], wd, stream_clock: bool) -> None:
    """One rank, from loading its part of the model to writing the run directory (rank 0)."""
    rank = comm.rank
    devices = cfg.rank_devices()
    device = torch.device(devices[rank])
    rec = Recorder(rank, cfg.trace, device, stream_only=stream_clock)
    sampling = SamplingConfig(cfg.temperature, cfg.seed)
    t_join = time.perf_counter()
    comm.set_timeout(cfg.load_timeout_s)  # loading speeds differ; liveness meanwhile: the heartbeat
    wd.phase("loading the model", cfg.load_timeout_s)
    with _SETUP_LOCK:  # and drop what this rank does not run at once: one full model in memory at a time
        model, tok = load_target(cfg, devices[rank])
        L = model.config.num_layers
        start, end = (0, 0) if rank == 0 else stage_bounds(L, cfg.stages, cfg.stage_split)[rank - 1]
        keep_only(model, start, end, head=rank == 0)
    anchors = _share_anchors(comm, cfg, L)
    with _SETUP_LOCK:  # CUDA-graph capture must not see another thread's CUDA calls
        plan = make_plan(cfg, L, anchors)
        if rank == 0:
            role = ControllerRank(comm, plan, model, rec, wd, sampling,
                                  stage_steps_graphed=cfg.graphed_steps, speculative=cfg.speculative_control)
        else:
            from .stage import StageRank

            role = StageRank(comm, plan, model.stage(start, end), rank - 1, rec, wd,
                             use_graph=cfg.graphed_steps,
                             compile_step=cfg.resolved_kernels() == "compiled")
    _barrier(comm)  # everyone loaded and captured: from here on, receives use the run timeout
    if os.environ.get("SPD_FAULT_RANK") == str(rank):  # fault injection for tests: this rank fails now
        raise RuntimeError("injected fault (SPD_FAULT_RANK)")
    print(f"rank {rank}: ready on {devices[rank]} (process {comm.procs[rank]}) after "
          f"{time.perf_counter() - t_join:.1f} s; decoding", flush=True)
    comm.set_timeout(cfg.timeout_s)
    wd.phase("clock alignment", cfg.timeout_s + 10)
    sync = clock.align(comm)
    epoch_ns = time.perf_counter_ns()
    if rank == 0:
        results, lossless = _drive(cfg, role, model, prompts, plan)
        role.shutdown()
    else:
        role.run()
    wd.phase("finishing", cfg.timeout_s + 10)
    clock.measure_drift(comm, sync)
    wd.stop_checking()
    parts = _gather(comm, rec, sync)
    if rank == 0:
        header = _header(cfg, model, plan, parts, comm)
        clocks = [p.pop("clock") for p in parts]
        for p in parts:
            p.pop("device_name", None)
            p.pop("host", None)
        summary = write_run(Path(cfg.out), cfg, header, clocks, parts, epoch_ns, results, prompts,
                            _decoder(tok), lossless)
        print(summary_line(summary), flush=True)


def _run_single(cfg, prompts, wd, rec, sampling, device) -> None:
    from .single import SingleDeviceAR

    wd.phase("loading the model", cfg.load_timeout_s)
    model, tok = load_target(cfg, str(device))
    ar = SingleDeviceAR(model, rec, wd, sampling, use_graph=cfg.graphed_steps,
                        compile_step=cfg.resolved_kernels() == "compiled")
    wd.phase("decode", cfg.timeout_s + 10)
    eos = _eos(cfg, model)
    epoch_ns = time.perf_counter_ns()
    for w in range(cfg.warmup):
        ar.run(-1, prompts[0]["ids"], min(cfg.max_new_tokens, 8), eos)
    results = [ar.run(i, p["ids"], cfg.max_new_tokens, eos) for i, p in enumerate(prompts)]
    from ..spd_controller import PipelinePlan

    plan = PipelinePlan(model.config.num_layers, ((0, model.config.num_layers),))
    parts = [{"events": rec.events, "cycles": rec.cycles, "prompts": [], "device_name": device_name(device),
              "host": host_info()}]
    header = _header(cfg, model, plan, parts, None)
    clocks = [{"rank": 0, "offset_ns": 0, "rtt_min_ns": 0, "residual_ns": 0, "drift_ns": 0}]
    for p in parts:
        p.pop("device_name")
        p.pop("host")
    summary = write_run(Path(cfg.out), cfg, header, clocks, parts, epoch_ns, results, prompts, _decoder(tok), None)
    print(summary_line(summary), flush=True)


def _drive(cfg: RunConfig, role: ControllerRank, model, prompts: list[dict], plan) -> tuple[list[PromptResult], bool | None]:
    """Rank 0: warm-up, (replay) reference pass, then the measured generations."""
    eos = _eos(cfg, model)
    M = cfg.max_new_tokens
    if cfg.method == "ar_pipeline":
        for _ in range(cfg.warmup):
            role.run_ar_pipeline(-1, prompts[0]["ids"], min(M, 8), eos, record_cycles=False)
        return [role.run_ar_pipeline(i, p["ids"], M, eos) for i, p in enumerate(prompts)], None
    from ..spd_controller import SPDController

    reference: dict[tuple[int, ...], list[int]] = {}
    if cfg.draft == "replay" or (cfg.check_lossless and cfg.temperature == 0):
        # The replay draft needs AR's greedy tokens: run AR through this very pipeline first (same stage code
        # and kernels, untimed), which also makes the run check its own losslessness.
        for p in prompts:
            reference[tuple(p["ids"])] = role.run_ar_pipeline(-2, p["ids"], M, eos, record_cycles=False).tokens

    def reference_for(ids: tuple[int, ...]) -> list[int]:
        if ids not in reference:
            raise RuntimeError("replay draft: no reference tokens for this prompt")
        return reference[ids]

    draft = make_draft(cfg, model, reference_for)
    ctrl = SPDController(plan, model, draft, SamplingConfig(cfg.temperature, cfg.seed), model.config.max_seq_len,
                         speculative=cfg.speculative_control)
    for _ in range(cfg.warmup):
        role.run_spd(ctrl, -1, prompts[0]["ids"], min(M, 2 * cfg.stages + 4), eos)
    results = [role.run_spd(ctrl, i, p["ids"], M, eos) for i, p in enumerate(prompts)]
    lossless = None
    if reference:
        lossless = all(r.tokens == reference[tuple(prompts[r.prompt]["ids"])] for r in results)
    return results, lossless


def _eos(cfg: RunConfig, model) -> tuple[int, ...]:
    return () if cfg.ignore_eos else tuple(model.config.eos_token_ids)


def _share_anchors(comm: Comm, cfg: RunConfig, num_layers: int) -> tuple[int, ...]:
    """Rank 0 decides the anchor set (it may read a draft checkpoint only it can see) and tells the stages."""
    if comm.rank == 0:
        anchors = plan_anchors(cfg, num_layers)
        msg = torch.tensor([len(anchors)] + list(anchors) + [-1] * (64 - len(anchors)), dtype=torch.int64)
        for r in range(1, comm.world_size):
            comm.send_ints(msg, r)
        return anchors
    v = [int(x) for x in comm.recv_ints(65, 0, "anchor set")]
    return tuple(v[1:1 + v[0]])


def _barrier(comm: Comm) -> None:
    one = torch.ones(1, dtype=torch.int64)
    if comm.rank == 0:
        for r in range(1, comm.world_size):
            comm.recv_ints(1, r, "ready signal (loading or CUDA-graph capture)")
        for r in range(1, comm.world_size):
            comm.send_ints(one, r)
    else:
        comm.send_ints(one, 0)
        comm.recv_ints(1, 0, "start signal")


def _gather(comm: Comm, rec: Recorder, sync: clock.ClockSync) -> list[dict]:
    """Every rank's records to rank 0 as JSON bytes over the control plane (no CUDA collectives: ranks that
    share a GPU must never meet in an NCCL communicator)."""
    mine = {"events": rec.events, "cycles": rec.cycles, "prompts": [], "clock": sync.to_dict(),
            "device_name": device_name(comm.device), "host": host_info()}
    if comm.rank != 0:
        comm.send_bytes(json.dumps(mine).encode(), 0)
        return []
    return [mine] + [json.loads(comm.recv_bytes(r, "trace records").decode()) for r in range(1, comm.world_size)]


def _header(cfg: RunConfig, model, plan, parts: list[dict], comm: Comm | None) -> dict:
    devices = cfg.rank_devices()
    c = model.config
    return {"created_unix_s": time.time(), "method": cfg.method, "n_stages": cfg.stages,
            "placement": cfg.placement, "rank_devices": devices, "rank_processes": cfg.rank_processes(),
            "controller_process": ("shared with stage 1 (a thread on its own CUDA stream)"
                                   if cfg.rank_processes()[1:2] == [0] else "separate"),
            "process_layout": process_layout(devices, cfg.rank_processes()),
            "kernels": cfg.resolved_kernels(),
            "device_names": [p["device_name"] for p in parts], "hosts": [p["host"]["hostname"] for p in parts],
            # the CPUs each rank's process could run on ("0-3,8"); narrowed to a block per process by --pin-cpus
            "rank_cpus": [p["host"]["cpus"] for p in parts], "pin_cpus": cfg.pin_cpus,
            "model": {"spec": cfg.model, **c.to_dict()}, "dtype": cfg.resolved_dtype(),
            "stage_layers": [list(b) for b in plan.bounds], "anchors": list(plan.anchors),
            "draft": ({"source": cfg.draft, "alpha": cfg.alpha if cfg.draft == "replay" else None,
                       "checkpoint": cfg.draft_checkpoint, "layers": cfg.draft_layers,
                       "vocab": (min(cfg.draft_vocab, c.vocab_size) or None) if not cfg.draft_checkpoint else None,
                       "graphs": cfg.draft_graphs}
                      if cfg.method == "spd" else None),
            "control": "speculative" if cfg.speculative_control else "after_verify",
            "temperature": cfg.temperature, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
            "trace_level": cfg.trace, "cuda_graphs": cfg.graphed_steps,
            "timeout_s": cfg.timeout_s, "env": environment(devices)}


def _decoder(tok):
    if tok is None:
        return lambda ids: None
    return lambda ids: tok.decode(ids)
