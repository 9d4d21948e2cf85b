"""The hardware/software profile: what `spd calibrate` fits and `--profile` consumes (versioned JSON).

docs/calibration.md documents every field. All times are milliseconds (names end in ``_ms``); parameter
counts are millions (``_mparams``). A profile says *how long things take* on one machine + software stack,
never how often drafts are accepted: acceptance always comes from a scenario or a measured sequence.

Spread: every fitted duration carries a :class:`Dist` (mean, coefficient of variation, and up to
``MAX_SAMPLES`` measured samples as quantiles) so a scenario can use a lognormal or the empirical
distribution instead of the mean alone.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_write_json

PROFILE_FORMAT = "spd-profile"
# 2 (session 10): the AR pipeline's trace overhead may be stored per rank ("ar_per_rank"); 3 (session 11): the
# stage model may carry the contention of uninstrumented runs ("untraced_kappa_per_ms_by_method")
PROFILE_VERSION = 3
READS_VERSIONS = (1, 2, 3)  # version 1: every trace overhead per cycle
MAX_SAMPLES = 64  # quantiles kept per distribution: enough for an empirical draw, small files
LINK_TYPES = ("same_device", "intra_node", "inter_node")
# environment keys that make a profile non-transferable when they differ
ENV_KEYS = ("torch", "cuda", "driver", "device_names")


class ProfileMismatchWarning(UserWarning):
    """A profile measured on another device / software stack is being applied here."""


def same_dims_key(shape_key: str, measured) -> str | None:
    """The key among ``measured`` that stands for ``shape_key``: itself, else the first of the same
    architecture under another name (the random-weight timing runs stand for the real model:
    ``ModelShape.key`` is ``name:dims``); None when no measured shape has its dimensions."""
    if shape_key in measured:
        return shape_key
    dims = shape_key.split(":", 1)[-1]
    return next((k for k in measured if k.split(":", 1)[-1] == dims), None)


def draft_fit_key(source: str, model_name: str) -> str:
    """Where a profile keeps a draft source's timing fit: a trained PDM is one model's drafter, so its fit is
    ``pdm@<model>`` (the published profile's convention: a bare ``pdm`` is a model-agnostic one); the replay
    draft, whose inner PDM is sized to the target, stays ``replay``."""
    return f"pdm@{model_name}" if source == "pdm" else source


def resolve_draft_source(draft: dict, requested: str | None, model_name: str) -> tuple[str | None, str | None]:
    """(the draft fit to use, a note or None). ``pdm`` (or nothing requested) means this model's trained
    drafter where measured, else a model-agnostic ``pdm``, else the replay draft, which runs the same PDM
    forward every cycle for its real cost; any other source is used as named."""
    if requested not in (None, "pdm"):
        return requested, None
    for key in (draft_fit_key("pdm", model_name), "pdm"):
        if key in draft:
            return key, None
    if "replay" in draft:
        note = ("draft source 'pdm' not measured for this model: its time is the replay draft's (which runs the "
                "same PDM forward every cycle)") if requested == "pdm" else None
        return "replay", note
    return (requested or next(iter(draft), None)), None


@dataclass(frozen=True)
class Dist:
    """A duration distribution in ms: mean, CV (std/mean) and quantile samples (may be empty)."""

    mean_ms: float
    cv: float = 0.0
    samples_ms: tuple[float, ...] = ()

    @staticmethod
    def of(samples, max_samples: int = MAX_SAMPLES) -> "Dist":
        x = np.asarray([s for s in samples if math.isfinite(s)], dtype=float)
        if x.size == 0:
            return Dist(0.0)
        m = float(x.mean())
        cv = float(x.std() / m) if m > 0 else 0.0
        q = np.quantile(x, (np.arange(max_samples) + 0.5) / max_samples) if x.size > max_samples else np.sort(x)
        return Dist(m, cv, tuple(round(float(v), 6) for v in q))

    def scaled(self, factor: float) -> "Dist":
        return Dist(self.mean_ms * factor, self.cv, tuple(s * factor for s in self.samples_ms))

    def to_json(self) -> dict:
        return {"mean_ms": self.mean_ms, "cv": self.cv, "samples_ms": list(self.samples_ms)}


@dataclass(frozen=True)
class LinearFit:
    """y_ms = sum(coef[name] * feature[name]); features not listed are 0. ``rmse_ms`` on the fitted points."""

    coef: dict[str, float]
    rmse_ms: float = 0.0
    points: int = 0

    def __call__(self, **features: float) -> float:
        return float(sum(c * features.get(k, 1.0 if k == "const" else 0.0) for k, c in self.coef.items()))


@dataclass(frozen=True)
class DeviceShare:
    """Who computes on one device, seen from a rank there: the pipeline stages on it (that rank included when it
    is a stage) and whether rank 0 (controller, draft, head) is on it."""

    stages: int = 1
    rank0: bool = False

    @property
    def ranks(self) -> int:
        return self.stages + int(self.rank0)


@dataclass(frozen=True)
class StageModel:
    """Stage forward of ``k`` layers of a model with ``layer_mparams`` parameters per layer, T = k * a + b with
    a = a0_ms + a1_ms_per_mparam * layer_mparams, slowed by what else computes on its device (method m):

        t = T * (1 + kappa_m * (stages on the device - 1)) + rho_m * min(W, T)   if rank 0 is on the device,
        kappa_m = kappa_by_method[m] + kappa_bw_by_method[m] * B,

B = the rate (TB/s) at which one stage alone streams its weights, 2 bytes x layer params / layer time: stages that
draw more of the memory bandwidth slow each other more (on 4x H200 two llama-3.1-8b stages on a GPU by 45%,
two qwen3-0.6b stages by 25%).

An uninstrumented run (no per-op synchronisation) shares a GPU differently: ``untraced_kappa_per_ms_by_method``
(fitted on cycle-level runs with stages sharing a device, ``untraced_contention.py``) replaces kappa_m there by
c_m x T, T the forward's time alone (ms): on 2x H100 the uninstrumented runs needed kappa 0.32-0.55, growing with
T, where the full traces gave 0.56-0.58 for all (docs/calibration.md, session 11).
    W = the time rank 0 computes beside it: the draft where it runs concurrently with the stages (SPD), else the
    whole forward (AR pipeline: rank 0 waits in a posted receive, which time-slices a GPU shared across
    processes, but costs nothing from a thread of the same process). In SPD the stages of one device run
    concurrently and the draft overlaps them; in the AR pipeline the token walks, so its stages never overlap.
    ``rank0_overlap_by_method`` None (profiles before session 8): ``t = T * (1 + kappa * (r - 1))`` with r the
    ranks on the device, rank 0 included, whatever they do.

    ``per_shape_layer_ms`` holds the per-layer time fitted for each width seen (keyed by the shape key),
    used instead of the cross-width line when the shape was measured. ``spread`` is the per-forward
    multiplicative jitter (measured / fitted within one run), a distribution of ratios around 1.
    """

    a0_ms: float
    a1_ms_per_mparam: float
    b_ms: float
    kappa: float = 0.0
    per_shape_layer_ms: dict[str, float] = field(default_factory=dict)
    spread: Dist = Dist(1.0)
    rmse_ms: float = 0.0
    points: int = 0
    kappa_by_method: dict[str, float] = field(default_factory=dict)  # method -> kappa (else ``kappa``)
    rank0_overlap_by_method: dict[str, float] | None = None  # method -> rho (else ``rank0_overlap``); None: legacy
    rank0_overlap: float = 0.0
    kappa_bw_by_method: dict[str, float] = field(default_factory=dict)  # method -> kappa per TB/s streamed
    # method -> c (1/ms): an uninstrumented forward of T ms alone takes kappa = c x T per further stage on its device
    untraced_kappa_per_ms_by_method: dict[str, float] = field(default_factory=dict)
    # method -> [shortest, longest] forward time alone (ms) of the runs that c was fitted on
    untraced_forward_range_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def concurrent(self) -> bool:
        """Whether contention follows the work that runs concurrently (else the rank count, older profiles)."""
        return self.rank0_overlap_by_method is not None

    def measured_key(self, shape_key: str | None) -> str | None:
        """The measured shape whose per-layer time ``shape_key`` takes (``same_dims_key``)."""
        return shape_key if shape_key is None else same_dims_key(shape_key, self.per_shape_layer_ms)

    def layer_ms(self, shape_key: str | None, layer_mparams: float) -> float:
        """A measured shape's per-layer time (``measured_key``); else the cross-width line."""
        key = self.measured_key(shape_key)
        if key is not None:
            return self.per_shape_layer_ms[key]
        return self.a0_ms + self.a1_ms_per_mparam * layer_mparams

    def stream_tbps(self, shape_key: str | None, layer_mparams: float) -> float:
        """B: how fast (TB/s) one stage alone streams its bf16 weights."""
        a = self.layer_ms(shape_key, layer_mparams)
        return 2.0 * layer_mparams / a / 1000.0 if a > 0 else 0.0

    def _kappa(self, method: str | None, tbps: float = 0.0) -> float:
        base = self.kappa_by_method.get(method, self.kappa) if method is not None else self.kappa
        return base + (self.kappa_bw_by_method.get(method, 0.0) * tbps if self.concurrent else 0.0)

    def _rho(self, method: str | None) -> float:
        by = self.rank0_overlap_by_method or {}
        return by.get(method, self.rank0_overlap) if method is not None else self.rank0_overlap

    def contention(self, ranks_on_device: int, method: str | None = None) -> float:
        """The legacy factor: every other rank on the device slows a computation by ``kappa``."""
        return 1.0 + self._kappa(method) * max(ranks_on_device - 1, 0)

    def untraced_kappa(self, method: str | None, alone_ms: float) -> float | None:
        """kappa of an uninstrumented forward of ``alone_ms`` (c x T), None where not fitted for ``method``."""
        c = self.untraced_kappa_per_ms_by_method.get(method) if method is not None else None
        return None if c is None else c * alone_ms

    def rank0_factor(self, share: DeviceShare, method: str | None = None, tbps: float = 0.0,
                     untraced_alone_ms: float | None = None) -> float:
        """How much slower rank 0's own work (draft, control, verify) runs on its device than beside one stage
        (the placement of every measured run): each further stage there (streaming ``tbps``) slows it by ``kappa``
        (legacy: each other rank). ``untraced_alone_ms``: in an uninstrumented run, the forward time alone of the
        stages there (kappa = c x that, where fitted)."""
        if not self.concurrent:
            return self.contention(share.ranks, method)
        kap = self.untraced_kappa(method, untraced_alone_ms) if untraced_alone_ms is not None else None
        return 1.0 + (self._kappa(method, tbps) if kap is None else kap) * max(share.stages - 1, 0)

    def alone_ms(self, layers: int, shape_key: str | None, layer_mparams: float) -> float:
        """T: a forward of ``layers`` layers with nothing else on its device."""
        return layers * self.layer_ms(shape_key, layer_mparams) + self.b_ms

    def forward_ms(self, layers: int, shape_key: str | None, layer_mparams: float,
                   share: DeviceShare = DeviceShare(), method: str | None = None,
                   rank0_busy_ms: float | None = None, untraced: bool = False) -> float:
        """One forward (see the class doc). ``rank0_busy_ms``: W, the time rank 0 computes beside the stage
        (None: the whole forward); ``untraced``: in a run without per-op tracing (its contention, where fitted)."""
        t = self.alone_ms(layers, shape_key, layer_mparams)
        if not self.concurrent:
            return t * self.contention(share.ranks, method)
        extra = self._rho(method) * min(t if rank0_busy_ms is None else rank0_busy_ms, t) if share.rank0 else 0.0
        kap = self.untraced_kappa(method, t) if untraced else None
        if kap is None:
            kap = self._kappa(method, self.stream_tbps(shape_key, layer_mparams))
        return t * (1.0 + kap * max(share.stages - 1, 0)) + extra


@dataclass(frozen=True)
class MethodTerms:
    """Per pipeline method (``ar_pipeline``, ``spd``): the costs that depend on what the controller does
    while the stages work (on a shared GPU: waiting in a posted receive vs drafting). ``None`` / missing
    link types fall back to the profile's pooled values."""

    control_hop: Dist | None = None
    send_ms: Dist | None = None
    hops: dict[str, Dist] = field(default_factory=dict)  # measured from the end of the sender-side send
    collect: Dist | None = None  # rank 0: draft end -> verify start when the collected outputs were already sent
    runs: int = 0
    # rank 0's verify for this method (SPD's carries its bookkeeping and draft insertion, the AR pipeline's
    # only the head and argmax: 2-3x apart on the H100 traces); None: the pooled ``Profile.verify``
    verify: LinearFit | None = None
    # cycle start -> stage 1's forward start when that came after the broadcast: stage 1 starts at
    # max(broadcast, this floor), so a short broadcast (n=2) leaves a long control hop and a long one (n=4)
    # none. None (older profiles, SPD): the control hop is ``control_hop``
    stage1_start_floor: Dist | None = None
    # SPD: end of the broadcast -> forward start of stages 2..n (control delivery to their thread or process and
    # the receive of the input sent in the previous cycle: 0.2-0.5 ms on 4x H200, against 0-0.25 ms for stage 1,
    # which shares rank 0's process). None (older profiles, the AR pipeline): every stage starts ``control_hop``
    # after the broadcast
    stage_start: Dist | None = None
    # {link type: Dist}: a stage's forward end -> rank 0 has its output (rank 0 waiting): what the model charges a
    # stage that reports to rank 0 (SPD: every anchor stage and the last; AR pipeline: the last). Missing (older
    # profiles): the sender-side send and the hop
    report: dict[str, Dist] = field(default_factory=dict)
    # rank 0's LM head on the last stage's output (features const, head_mparams: a GEMV over the vocabulary): the
    # part of verify that does not wait for the other stages' outputs. None (older profiles, runtimes that do not
    # record it): all of verify waits for every output
    head: LinearFit | None = None


@dataclass(frozen=True)
class Profile:
    environment: dict
    stage: StageModel
    ar_extra: LinearFit  # single-device AR step minus L x layer: embedding + head + sampling (features: const, head_mparams)
    ar_spread: Dist  # ratio measured / modelled AR step
    draft: dict[str, LinearFit]  # per draft source ("replay", "pdm"): features const, draft_layers, draft_layer_rows, draft_layer_mparams
    draft_spread: Dist
    hops: dict[str, Dist]  # link type -> one-way latency of a one-token hidden state
    hop_ms_per_kb: dict[str, float]  # link type -> size slope (0 when sizes did not vary)
    control: LinearFit  # rank 0: cycle start -> control broadcast done (features: const, stages)
    control_hop: Dist  # broadcast done -> the stage starts its forward (control delivery + input receive)
    send_ms: Dist  # a stage's send of its output to the next stage (sender side), before it reports to rank 0
    verify: LinearFit  # rank 0 after the outputs arrive: norm + head + verify + bookkeeping (features: const, head_mparams, stages)
    bookkeeping: Dist  # gap between the end of one cycle and the start of the next
    flush: Dist  # extra time of a reject cycle (DISCARD + KV crop) over an accept cycle
    cost_spread: Dist  # ratio measured / modelled of the controller's fixed costs
    version: int = PROFILE_VERSION
    source: dict = field(default_factory=dict)  # traces, notes, fit diagnostics
    instrumentation: dict | None = None  # published profile only: how the breakdown was reconciled
    by_method: dict[str, MethodTerms] = field(default_factory=dict)  # optional (older profiles: pooled only)
    # rank 0's work in an SPD cycle in which no token finished (the pipeline filling: draft insertion and
    # bookkeeping, no head); None (older profiles): such cycles cost ``verify`` like the others
    verify_fill: Dist | None = None
    # what --trace full adds to a cycle (ms) by method and cycle event (accept | reject | fill | ar), from runs
    # measured at both trace levels; predictions of uninstrumented runs take it off rank 0's serial costs
    # ({}: not measured; the prediction is then that of a fully traced run)
    trace_overhead_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # the single-device AR time per token (ms: decode time / tokens, mean over runs) of each shape the traces
    # measured (``same_dims_key``): a measured shape's AR step is predicted as measured, others by
    # L x layer + ``ar_extra``. {}: older profiles
    ar_step_ms_by_shape: dict[str, float] = field(default_factory=dict)

    def terms(self, method: str) -> tuple[Dist, Dist, dict[str, Dist]]:
        """control_hop, send_ms and hops for ``method``: its own where measured, else pooled."""
        t = self.by_method.get(method)
        if t is None:
            return self.control_hop, self.send_ms, self.hops
        return (t.control_hop or self.control_hop, t.send_ms or self.send_ms, {**self.hops, **t.hops})

    def to_json(self) -> dict:
        d = asdict(self)
        d = {"format": PROFILE_FORMAT, **d}
        return json.loads(json.dumps(d, allow_nan=False))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())


# ---------------------------------------------------------------------------------------------- loading
def _dist(obj: Any, src: str, fld: str) -> Dist:
    if not isinstance(obj, dict) or "mean_ms" not in obj:
        raise InputError(f"{src}: {fld}: expected {{\"mean_ms\": ..., \"cv\": ..., \"samples_ms\": [...]}}")
    try:
        mean = float(obj["mean_ms"])
        cv = float(obj.get("cv", 0.0))
        samples = tuple(float(s) for s in obj.get("samples_ms", ()))
    except (TypeError, ValueError):
        raise InputError(f"{src}: {fld}: numbers expected") from None
    if not (math.isfinite(mean) and mean >= 0 and math.isfinite(cv) and cv >= 0) or any(not (s >= 0) for s in samples):
        raise InputError(f"{src}: {fld}: times and cv must be finite and >= 0")
    return Dist(mean, cv, samples)


def _lin(obj: Any, src: str, fld: str) -> LinearFit:
    if not isinstance(obj, dict) or not isinstance(obj.get("coef"), dict):
        raise InputError(f"{src}: {fld}: expected {{\"coef\": {{feature: ms}}}}")
    try:
        coef = {str(k): float(v) for k, v in obj["coef"].items()}
    except (TypeError, ValueError):
        raise InputError(f"{src}: {fld}.coef: numbers expected") from None
    if any(not math.isfinite(v) for v in coef.values()):
        raise InputError(f"{src}: {fld}.coef: must be finite")
    return LinearFit(coef, float(obj.get("rmse_ms", 0.0)), int(obj.get("points", 0)))


def _num(obj: dict, key: str, src: str, fld: str, default: float | None = None) -> float:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{src}: {fld}.{key}: expected a finite number, got {v!r}")
    return float(v)


def _num_map(obj: Any, src: str, fld: str) -> dict[str, float]:
    """An object of finite numbers (e.g. {method: kappa}); anything else is bad input."""
    if not isinstance(obj, dict):
        raise InputError(f"{src}: {fld}: expected an object of numbers")
    out = {}
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{src}: {fld}.{k}: expected a finite number, got {v!r}")
        out[str(k)] = float(v)
    return out


def _ranges(obj: Any, src: str, fld: str) -> dict[str, list[float]]:
    """A map of name -> [low, high]."""
    if not isinstance(obj, dict) or any(not isinstance(v, list) or len(v) != 2 for v in obj.values()):
        raise InputError(f"{src}: {fld}: expected an object of [low, high] pairs")
    try:
        return {str(k): [float(v[0]), float(v[1])] for k, v in obj.items()}
    except (TypeError, ValueError):
        raise InputError(f"{src}: {fld}: numbers expected") from None


def _by_method(obj: Any, src: str) -> dict[str, MethodTerms]:
    if not isinstance(obj, dict):
        raise InputError(f"{src}: by_method: expected an object keyed by method")
    out = {}
    for m, t in obj.items():
        if not isinstance(t, dict):
            raise InputError(f"{src}: by_method.{m}: expected an object")
        hops, report = t.get("hops") or {}, t.get("report") or {}
        for name, d in (("hops", hops), ("report", report)):
            if not isinstance(d, dict) or any(k not in LINK_TYPES for k in d):
                raise InputError(f"{src}: by_method.{m}.{name}: expected an object keyed by link type "
                                 f"({', '.join(LINK_TYPES)})")
        out[str(m)] = MethodTerms(
            control_hop=_dist(t["control_hop"], src, f"by_method.{m}.control_hop") if t.get("control_hop") else None,
            send_ms=_dist(t["send_ms"], src, f"by_method.{m}.send_ms") if t.get("send_ms") else None,
            hops={k: _dist(v, src, f"by_method.{m}.hops.{k}") for k, v in hops.items()},
            collect=_dist(t["collect"], src, f"by_method.{m}.collect") if t.get("collect") else None,
            runs=int(t.get("runs", 0)),
            verify=_lin(t["verify"], src, f"by_method.{m}.verify") if t.get("verify") else None,
            stage1_start_floor=_dist(t["stage1_start_floor"], src, f"by_method.{m}.stage1_start_floor")
            if t.get("stage1_start_floor") else None,
            stage_start=_dist(t["stage_start"], src, f"by_method.{m}.stage_start") if t.get("stage_start") else None,
            report={k: _dist(v, src, f"by_method.{m}.report.{k}") for k, v in report.items()},
            head=_lin(t["head"], src, f"by_method.{m}.head") if t.get("head") else None)
    return out


PER_RANK = "_per_rank"  # suffix of a trace-overhead event stored per rank on the AR pipeline's serial path


def _trace_overhead(obj: Any, src: str, version: int) -> dict[str, dict[str, float]]:
    bad = InputError(f"{src}: trace_overhead_ms: expected {{method: {{cycle event: ms}}}}")
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise bad
    try:
        out = {str(m): {str(e): float(x) for e, x in d.items()} for m, d in obj.items()}
    except (TypeError, ValueError):
        raise bad from None
    for m, d in out.items():
        per_rank = [e for e in d if e.endswith(PER_RANK)]
        if per_rank and (m != "ar_pipeline" or version < 2):
            raise InputError(f"{src}: trace_overhead_ms.{m}.{per_rank[0]}: per-rank overheads are the AR pipeline's "
                             "only, from profile version 2")
    return out


def parse_profile(obj: Any, src: str = "profile") -> Profile:
    if not isinstance(obj, dict) or obj.get("format") != PROFILE_FORMAT:
        raise InputError(f"{src}: not an {PROFILE_FORMAT} file (missing \"format\": \"{PROFILE_FORMAT}\")")
    if obj.get("version") not in READS_VERSIONS:
        raise InputError(f"{src}: version: unsupported profile version {obj.get('version')!r} (this build reads "
                         f"{', '.join(map(str, READS_VERSIONS))})")
    try:
        st = obj["stage"]
        if not isinstance(st, dict):
            raise InputError(f"{src}: stage: expected an object")
        if st.get("untraced_kappa_per_ms_by_method") and obj["version"] < 3:  # an older build would ignore it
            raise InputError(f"{src}: stage.untraced_kappa_per_ms_by_method: from profile version 3")
        stage = StageModel(
            a0_ms=_num(st, "a0_ms", src, "stage"), a1_ms_per_mparam=_num(st, "a1_ms_per_mparam", src, "stage"),
            b_ms=_num(st, "b_ms", src, "stage"), kappa=_num(st, "kappa", src, "stage", 0.0),
            per_shape_layer_ms=_num_map(st.get("per_shape_layer_ms") or {}, src, "stage.per_shape_layer_ms"),
            kappa_by_method=_num_map(st.get("kappa_by_method") or {}, src, "stage.kappa_by_method"),
            rank0_overlap_by_method=None if st.get("rank0_overlap_by_method") is None else
            _num_map(st["rank0_overlap_by_method"], src, "stage.rank0_overlap_by_method"),
            rank0_overlap=_num(st, "rank0_overlap", src, "stage", 0.0),
            kappa_bw_by_method=_num_map(st.get("kappa_bw_by_method") or {}, src, "stage.kappa_bw_by_method"),
            untraced_kappa_per_ms_by_method=_num_map(st.get("untraced_kappa_per_ms_by_method") or {}, src,
                                                     "stage.untraced_kappa_per_ms_by_method"),
            untraced_forward_range_ms=_ranges(st.get("untraced_forward_range_ms") or {}, src,
                                              "stage.untraced_forward_range_ms"),
            spread=_dist(st.get("spread", {"mean_ms": 1.0}), src, "stage.spread"),
            rmse_ms=_num(st, "rmse_ms", src, "stage", 0.0), points=int(st.get("points", 0)))
        draft = obj["draft"]
        if not isinstance(draft, dict):
            raise InputError(f"{src}: draft: expected an object of draft sources")
        hops = obj["hops"]
        if not isinstance(hops, dict) or not hops or any(k not in LINK_TYPES for k in hops):
            raise InputError(f"{src}: hops: expected an object keyed by link type ({', '.join(LINK_TYPES)})")
        env = obj.get("environment")
        if not isinstance(env, dict):
            raise InputError(f"{src}: environment: expected an object")
        return Profile(
            environment=env, stage=stage, ar_extra=_lin(obj["ar_extra"], src, "ar_extra"),
            ar_spread=_dist(obj["ar_spread"], src, "ar_spread"),
            draft={str(k): _lin(v, src, f"draft.{k}") for k, v in draft.items()},
            draft_spread=_dist(obj["draft_spread"], src, "draft_spread"),
            hops={k: _dist(v, src, f"hops.{k}") for k, v in hops.items()},
            hop_ms_per_kb=_num_map(obj.get("hop_ms_per_kb") or {}, src, "hop_ms_per_kb"),
            control=_lin(obj["control"], src, "control"), control_hop=_dist(obj["control_hop"], src, "control_hop"),
            send_ms=_dist(obj["send_ms"], src, "send_ms"), verify=_lin(obj["verify"], src, "verify"),
            bookkeeping=_dist(obj["bookkeeping"], src, "bookkeeping"), flush=_dist(obj["flush"], src, "flush"),
            cost_spread=_dist(obj["cost_spread"], src, "cost_spread"), version=PROFILE_VERSION,
            source=obj.get("source") or {}, instrumentation=obj.get("instrumentation"),
            by_method=_by_method(obj.get("by_method") or {}, src),
            verify_fill=_dist(obj["verify_fill"], src, "verify_fill") if obj.get("verify_fill") is not None else None,
            trace_overhead_ms=_trace_overhead(obj.get("trace_overhead_ms") or {}, src, obj["version"]),
            ar_step_ms_by_shape=_num_map(obj.get("ar_step_ms_by_shape") or {}, src, "ar_step_ms_by_shape"),
        )
    except KeyError as exc:
        raise InputError(f"{src}: missing field {exc.args[0]!r}") from None


def load_profile(path: str | Path, here: dict | None = None) -> Profile:
    """Read and validate a profile; warn (ProfileMismatchWarning) when ``here`` (an environment dict of the
    machine the prediction is for) differs from the profile's in torch / CUDA / driver / device names."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: profile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    prof = parse_profile(obj, str(p))
    if here is not None:
        check_environment(prof, here, str(p))
    return prof


def environment_mismatch(profile_env: dict, here: dict) -> list[str]:
    """Keys of ENV_KEYS whose values differ (keys absent on either side are not compared)."""
    out = []
    for k in ENV_KEYS:
        a, b = profile_env.get(k), here.get(k)
        if a is not None and b is not None and a != b:
            out.append(f"{k}: profile {a!r} vs here {b!r}")
    return out


def check_environment(profile: Profile, here: dict, src: str = "profile") -> list[str]:
    diffs = environment_mismatch(profile.environment, here)
    if diffs:
        warnings.warn(f"{src}: measured on another machine/software stack ({'; '.join(diffs)}): "
                      "its timings may not transfer", ProfileMismatchWarning, stacklevel=2)
    return diffs


def local_environment() -> dict:
    """This machine's environment in the profile's terms, without importing torch unless it is installed
    (the sim package stays torch-free: torch's version is read from package metadata)."""
    from importlib import metadata

    env: dict = {}
    try:
        env["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        env["torch"] = None
    return env
