"""The run configuration: one typed dataclass, validated before any process starts, shipped to every rank as
JSON. Rank placement and the stage split live here too (every rank derives the same split from it)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from sim.errors import InputError

METHODS = ("ar", "ar_pipeline", "spd")
DRAFTS = ("pdm", "replay")
DEVICES = ("cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
KERNELS = ("auto", "reference", "fused", "compiled")


@dataclass
class RunConfig:
    method: str
    stages: int
    model: str
    prompts: str
    out: str
    max_new_tokens: int = 64
    limit: int | None = None
    temperature: float = 0.0
    device: str = "cpu"
    placement: list[int] | None = None  # device index per rank: controller first, then stages 1..n
    draft: str = "pdm"
    alpha: float = 1.0
    draft_checkpoint: str | None = None
    draft_layers: int = 1
    seed: int = 0
    dtype: str = "auto"
    trace: str = "full"
    cuda_graphs: bool = True
    timeout_s: float = 30.0  # receive / watchdog bound once running
    load_timeout_s: float = 600.0  # bound on loading + CUDA-graph capture before the first prompt
    heartbeat_s: float = 20.0  # a peer silent this long (dead, stopped, wedged) ends every rank, in any phase
    max_seq_len: int | None = None  # KV-cache capacity; default: the model's
    ignore_eos: bool = True  # timing runs generate exactly max_new_tokens; False stops at the model's EOS
    check_lossless: bool = False  # T=0: also run AR through the same pipeline and compare (replay always does)
    warmup: int = 1  # untimed warm-up generations (first prompt, a few tokens) before the measured ones
    stage_split: list[int] | None = None  # explicit layers per stage (sums to L); default: as even as possible
    # On CUDA the ranks placed on one GPU share one process (each rank a thread with its own CUDA stream; on
    # CPU the controller hosts stage 1). True gives every rank its own process (GPU time-sliced between
    # contexts: docs/perf-notes.md).
    process_per_rank: bool = False
    # One-token step kernels (every rank, the single-device AR baseline included): reference (unfused), fused
    # (one-kernel RMSNorm, additive mask built once), compiled (fused + torch.compile of the step, then the
    # CUDA graph); auto = fused on CUDA, reference on CPU.
    kernels: str = "auto"
    draft_vocab: int = 0  # untrained / replay PDM: head over the first K token ids (0 = full vocabulary)
    # SPD: broadcast the next cycle's GO before verifying this one (ControllerRank.run_spd); a reject then
    # costs one wasted cycle more
    speculative_control: bool = False
    # Pin each process to its own block of the CPUs this launch may use (``launch.cpu_blocks``), against the OS
    # moving a rank's host loop between cores mid-run; off by default (docs/executor.md, "CPU pinning")
    pin_cpus: bool = False

    @property
    def draft_graphs(self) -> bool:
        """The PDM's per-cycle forward replayed from CUDA graphs (one per in-flight layout) whenever the stages'
        steps are: eager it is launch bound, 2.7-4.4 ms for qwen3-4b's 2-layer draft against 1.06 ms
        replayed (docs/perf-notes.md). ``--no-cuda-graphs`` turns both off."""
        return self.device == "cuda" and self.cuda_graphs

    @property
    def world_size(self) -> int:
        return 1 if self.method == "ar" else self.stages + 1

    def rank_processes(self) -> list[int]:
        """Process index of every rank. ``process_per_rank``: one each. CUDA: one process per GPU (in order of
        first use), hosting every rank placed there. CPU: the controller hosts stage 1 and every other stage
        is its own process (so CPU runs exercise the inter-process transport)."""
        if self.method == "ar":
            return [0]
        if self.process_per_rank:
            return list(range(self.world_size))
        devices = self.rank_devices()
        if self.device == "cuda":
            order = list(dict.fromkeys(devices))
            return [order.index(d) for d in devices]
        return [0] + [r - 1 for r in range(1, self.world_size)]

    @property
    def process_count(self) -> int:
        return max(self.rank_processes()) + 1

    def process_labels(self) -> list[str]:
        """What each process hosts, for messages: "ranks 0+1 (controller, stage 1)", "rank 2 (stage 2)"."""
        from .launch import process_label

        procs = self.rank_processes()
        return [process_label([r for r in range(len(procs)) if procs[r] == p]) for p in range(self.process_count)]

    @property
    def graphed_steps(self) -> bool:
        """Whether one-token steps (stages and the single-device AR) replay CUDA graphs."""
        return self.cuda_graphs and self.device == "cuda"

    def resolved_kernels(self) -> str:
        if self.kernels != "auto":
            return self.kernels
        return "fused" if self.device == "cuda" else "reference"

    def resolved_dtype(self) -> str:
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.device == "cuda" else "float32"

    def rank_devices(self) -> list[str]:
        """torch device string of every rank."""
        if self.device == "cpu":
            return ["cpu"] * self.world_size
        if self.placement is None:
            raise ValueError("placement not resolved (call default_placement first)")
        return [f"cuda:{i}" for i in self.placement]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls(**json.loads(text))


def validate(cfg: RunConfig) -> None:
    """Checks that need neither torch nor the model (see ``validate_against_model`` for the rest)."""
    if cfg.method not in METHODS:
        raise InputError(f"--method: {cfg.method!r} not one of {', '.join(METHODS)}")
    if cfg.device not in DEVICES:
        raise InputError(f"--device: unknown device {cfg.device!r}; use cpu or cuda")
    if cfg.draft not in DRAFTS:
        raise InputError(f"--draft: {cfg.draft!r} not one of {', '.join(DRAFTS)}")
    if cfg.dtype not in DTYPES:
        raise InputError(f"--dtype: {cfg.dtype!r} not one of {', '.join(DTYPES)}")
    if not isinstance(cfg.stages, int) or cfg.stages < 1:
        raise InputError(f"--stages: must be a positive integer, got {cfg.stages}")
    if cfg.method == "spd" and cfg.stages < 2:
        raise InputError("--stages: SPD needs at least 2 stages (with one there is no draft in flight to verify)")
    if cfg.method == "ar" and cfg.stages != 1:
        raise InputError("--stages: method ar runs on one device; use --stages 1 (or ar_pipeline)")
    if cfg.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens: must be >= 1, got {cfg.max_new_tokens}")
    if cfg.limit is not None and cfg.limit < 1:
        raise InputError(f"--limit: must be >= 1, got {cfg.limit}")
    if not cfg.temperature >= 0.0:
        raise InputError(f"--temperature: must be >= 0, got {cfg.temperature}")
    if not 0.0 <= cfg.alpha <= 1.0:
        raise InputError(f"--alpha: must be in [0, 1], got {cfg.alpha}")
    if cfg.speculative_control and cfg.method != "spd":
        raise InputError(f"--speculative-control: only for --method spd (got {cfg.method})")
    if cfg.draft == "replay" and cfg.temperature > 0:
        raise InputError("--draft replay: measurement-only draft for greedy runs (T=0); use --draft pdm for T>0")
    if cfg.draft_layers < 1:
        raise InputError(f"--draft-layers: must be >= 1, got {cfg.draft_layers}")
    if cfg.kernels not in KERNELS:
        raise InputError(f"--kernels: {cfg.kernels!r} not one of {', '.join(KERNELS)}")
    if cfg.kernels == "compiled" and cfg.device != "cuda":
        raise InputError("--kernels compiled: needs --device cuda (the compiled step is captured in a CUDA graph)")
    if cfg.draft_vocab < 0:
        raise InputError(f"--draft-vocab: must be >= 0, got {cfg.draft_vocab}")
    if cfg.trace not in ("full", "cycle"):
        raise InputError(f"--trace: {cfg.trace!r} not one of full, cycle")
    if not cfg.timeout_s > 0 or not cfg.load_timeout_s > 0:
        raise InputError("--timeout-s: must be > 0")
    if cfg.warmup < 0:
        raise InputError(f"--warmup: must be >= 0, got {cfg.warmup}")
    if cfg.draft_checkpoint is not None and not Path(cfg.draft_checkpoint).exists():
        raise InputError(f"--draft-checkpoint: {cfg.draft_checkpoint}: no such file or directory")
    if cfg.placement is not None:
        if len(cfg.placement) != cfg.world_size:
            what = "1 device (ar runs in one process)" if cfg.method == "ar" else \
                f"{cfg.world_size} devices (controller, then stages 1..{cfg.stages})"
            raise InputError(f"--placement: {len(cfg.placement)} entries, need {what}")
        if any(i < 0 for i in cfg.placement):
            raise InputError(f"--placement: negative device index in {cfg.placement}")
        if cfg.device == "cpu" and any(i != 0 for i in cfg.placement):
            raise InputError(f"--placement: on --device cpu every rank is on device 0, got {cfg.placement}")


def default_placement(method: str, stages: int, num_gpus: int) -> list[int]:
    """The controller shares GPU 0 with stage 1; stages spread over the GPUs in contiguous blocks."""
    if method == "ar":
        return [0]
    return [0] + [(s * max(num_gpus, 1)) // stages for s in range(stages)]


def parse_placement(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--placement: expected comma-separated device indices like 0,0,1, got {text!r}") from None
