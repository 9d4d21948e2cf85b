"""Scenario files: one what-if question as versioned JSON.

A scenario names the target model (its layer count), the hardware/software timings in milliseconds,
the acceptance of the drafts, and the decoding methods to compare. ``docs/scenario-format.md`` is the
user-facing reference; this module is the one parser and validator. Every problem raises
:class:`sim.errors.InputError` naming the file and the field.

Units: every time is in milliseconds for one token at batch 1 (field names end in ``_ms`` in code).
Acceptance ``alpha`` is always the *per-draft conditional* probability (Leviathan's alpha), never a
marginal accepted/drafted rate.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError, where

SCENARIO_VERSION = 1

TIMING_FIELDS = ("layer", "ar_token", "stage_overhead", "hop", "draft_layer", "verify", "cycle_overhead")
# Overheads that default to zero when a timing section is given but they are left out.
ZERO_DEFAULT_TIMINGS = ("stage_overhead", "hop", "verify", "cycle_overhead")


# ----------------------------------------------------------------------------------------- latencies
@dataclass(frozen=True)
class Latency:
    """A duration in ms: a constant, a lognormal given mean and coefficient of variation, or measured samples."""

    kind: str  # "constant" | "lognormal" | "empirical"
    mean_ms: float
    cv: float = 0.0
    samples_ms: tuple[float, ...] = ()

    @staticmethod
    def constant(ms: float) -> "Latency":
        return Latency("constant", float(ms))

    def scaled(self, factor: float) -> "Latency":
        return Latency(self.kind, self.mean_ms * factor, self.cv, tuple(s * factor for s in self.samples_ms))

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant" or (self.kind == "lognormal" and self.cv == 0.0)


def parse_latency(value: Any, src: str | None, fld: str) -> Latency:
    """``1.5`` | ``{"dist": "lognormal", "mean": 1.5, "cv": 0.1}`` | ``{"dist": "empirical", "samples": [...]}``."""
    if isinstance(value, bool):
        raise InputError(f"{where(src, fld)}: expected a time in ms, got {value!r}")
    if isinstance(value, (int, float)):
        return Latency.constant(_nonneg(value, src, fld))
    if isinstance(value, dict):
        dist = value.get("dist", "constant")
        _known_keys(value, {"dist", "mean", "value", "cv", "samples"}, src, fld)
        if dist == "constant":
            return Latency.constant(_nonneg(value.get("value", value.get("mean")), src, f"{fld}.value"))
        if dist == "lognormal":
            mean = _nonneg(value.get("mean"), src, f"{fld}.mean")
            cv = _nonneg(value.get("cv", 0.0), src, f"{fld}.cv")
            return Latency("lognormal", mean, cv)
        if dist == "empirical":
            samples = value.get("samples")
            if not isinstance(samples, list) or not samples:
                raise InputError(f"{where(src, fld)}.samples: expected a non-empty list of times in ms")
            xs = tuple(_nonneg(s, src, f"{fld}.samples[{i}]") for i, s in enumerate(samples))
            mean = sum(xs) / len(xs)
            var = sum((x - mean) ** 2 for x in xs) / len(xs)
            return Latency("empirical", mean, (math.sqrt(var) / mean) if mean > 0 else 0.0, xs)
        raise InputError(f"{where(src, fld)}.dist: unknown distribution {dist!r} (constant, lognormal, empirical)")
    raise InputError(f"{where(src, fld)}: expected a number of ms or a distribution object, got {type(value).__name__}")


# --------------------------------------------------------------------------------------- acceptance
@dataclass(frozen=True)
class MarkovAcceptance:
    """Two-state (bursty) acceptance: P(accept | previous accepted) and P(accept | previous rejected)."""

    p_accept_after_accept: float
    p_accept_after_reject: float

    @property
    def stationary_alpha(self) -> float:
        a, b = self.p_accept_after_accept, self.p_accept_after_reject
        return b / (1.0 - a + b) if (1.0 - a + b) > 0 else 1.0


@dataclass(frozen=True)
class Acceptance:
    """Per-draft acceptance. ``alpha`` is conditional (Leviathan): P(draft accepted | all earlier accepted).

    Exactly one form is set; ``alpha`` is always filled with the i.i.d.-equivalent mean so the
    closed form can use any form. ``per_position[k-1]`` is the conditional acceptance of the k-th
    draft of a chain (EAGLE / SD). ``sequence`` is a recorded accept(1)/reject(0) sequence to replay.
    """

    alpha: float
    form: str = "alpha"  # alpha | spd_accept_length | eagle_accept_length | per_position | markov | sequence | file
    per_position: tuple[float, ...] | None = None
    markov: MarkovAcceptance | None = None
    sequence: tuple[int, ...] | None = None
    source: str | None = None  # file / dataset the numbers came from, for the report

    def alpha_at(self, position: int) -> float:
        """Conditional acceptance of the draft at chain position ``position`` (1-based)."""
        if position < 1:
            raise ValueError(f"chain positions are 1-based, got {position}")
        if self.per_position:
            return self.per_position[min(position, len(self.per_position)) - 1]
        return self.alpha


def alpha_from_spd_accept_length(l_acc: float, n: int) -> float:
    """Invert L_acc = n / (1 + (n-1)(1-alpha)) (steady state, SPEC.md 1.1)."""
    from .closed_form import spd_alpha_from_accept_length  # the one copy of the formula

    return float(spd_alpha_from_accept_length(l_acc, n))


def alpha_from_eagle_accept_length(tau: float, steps: int) -> float:
    """Invert tau = (1 - alpha^(m+1)) / (1 - alpha) (mean tokens per round incl. the bonus token)."""
    from .closed_form import alpha_from_chain_tokens

    return float(alpha_from_chain_tokens(tau, steps))


def parse_acceptance(obj: Any, src: str | None, fld: str, base_dir: Path | None = None) -> Acceptance:
    if not isinstance(obj, dict):
        raise InputError(f"{where(src, fld)}: expected an object such as {{\"alpha\": 0.8}}")
    forms = [k for k in ("alpha", "spd_accept_length", "eagle_accept_length", "per_position", "markov", "sequence", "file") if k in obj]
    if len(forms) != 1:
        raise InputError(
            f"{where(src, fld)}: give exactly one of alpha, spd_accept_length (+stages), eagle_accept_length (+steps), "
            f"per_position, markov, sequence, file; got {forms or 'none'}"
        )
    form = forms[0]
    if form == "alpha":
        _known_keys(obj, {"alpha"}, src, fld)
        return Acceptance(_prob(obj["alpha"], src, f"{fld}.alpha"))
    if form == "spd_accept_length":
        _known_keys(obj, {"spd_accept_length", "stages"}, src, fld)
        n = _int(obj.get("stages"), src, f"{fld}.stages", minimum=2)
        l_acc = _num(obj["spd_accept_length"], src, f"{fld}.spd_accept_length")
        if not 1.0 <= l_acc <= n:
            raise InputError(f"{where(src, fld)}.spd_accept_length: must lie in [1, stages={n}], got {l_acc}")
        return Acceptance(alpha_from_spd_accept_length(l_acc, n), form)
    if form == "eagle_accept_length":
        _known_keys(obj, {"eagle_accept_length", "steps"}, src, fld)
        m = _int(obj.get("steps"), src, f"{fld}.steps", minimum=1)
        tau = _num(obj["eagle_accept_length"], src, f"{fld}.eagle_accept_length")
        if not 1.0 <= tau <= m + 1:
            raise InputError(f"{where(src, fld)}.eagle_accept_length: must lie in [1, steps+1={m + 1}], got {tau}")
        return Acceptance(alpha_from_eagle_accept_length(tau, m), form)
    if form == "per_position":
        _known_keys(obj, {"per_position"}, src, fld)
        pp = obj["per_position"]
        if not isinstance(pp, list) or not pp:
            raise InputError(f"{where(src, fld)}.per_position: expected a non-empty list of probabilities")
        probs = tuple(_prob(p, src, f"{fld}.per_position[{i}]") for i, p in enumerate(pp))
        return Acceptance(sum(probs) / len(probs), form, per_position=probs)
    if form == "markov":
        _known_keys(obj, {"markov"}, src, fld)
        mk = obj["markov"]
        if not isinstance(mk, dict):
            raise InputError(f"{where(src, fld)}.markov: expected an object")
        _known_keys(mk, {"p_accept_after_accept", "p_accept_after_reject"}, src, f"{fld}.markov")
        m = MarkovAcceptance(
            _prob(mk.get("p_accept_after_accept"), src, f"{fld}.markov.p_accept_after_accept"),
            _prob(mk.get("p_accept_after_reject"), src, f"{fld}.markov.p_accept_after_reject"),
        )
        return Acceptance(m.stationary_alpha, form, markov=m)
    if form == "sequence":
        _known_keys(obj, {"sequence"}, src, fld)
        seq = obj["sequence"]
        if not isinstance(seq, list) or not seq or any(s not in (0, 1) or isinstance(s, float) for s in seq):
            raise InputError(f"{where(src, fld)}.sequence: expected a non-empty list of 0 (reject) / 1 (accept)")
        return Acceptance(sum(seq) / len(seq), form, sequence=tuple(int(s) for s in seq))
    # form == "file": an acceptance result written by `spd eval-acceptance`
    import importlib.util

    if importlib.util.find_spec("sim.acceptance_file") is None:  # written by the acceptance-evaluation work
        raise InputError(f"{where(src, fld)}.file: acceptance result files are not supported by this build yet")
    from . import acceptance_file  # local import: optional module with its own format

    return acceptance_file.acceptance_from_file(obj, src, fld, base_dir)


# ------------------------------------------------------------------------------------------ sections
@dataclass(frozen=True)
class Target:
    layers: int
    name: str | None = None
    hidden_size: int | None = None


@dataclass(frozen=True)
class Timing:
    """Per-token times in ms (see docs/scenario-format.md). ``None`` = not given."""

    layer: Latency | None = None
    ar_token: Latency | None = None
    stage_overhead: Latency | None = None
    hop: Latency | None = None
    draft_layer: Latency | None = None
    verify: Latency | None = None
    cycle_overhead: Latency | None = None

    def mean_ms(self, name: str) -> float:
        lat = getattr(self, name)
        if lat is None:
            raise KeyError(name)
        return lat.mean_ms


@dataclass(frozen=True)
class Topology:
    """Devices per node and hop latencies; used by the simulator's placement model."""

    devices_per_node: int = 8
    hop_intra_node: Latency | None = None  # default: timing_ms.hop
    hop_inter_node: Latency | None = None  # default: timing_ms.hop
    bandwidth_gbps: float | None = None  # link bandwidth for size-dependent transfer time (GB/s)


@dataclass(frozen=True)
class Placement:
    """Device index of the controller (rank 0) and of each stage (ranks 1..n)."""

    controller: int
    stages: tuple[int, ...]


@dataclass(frozen=True)
class MethodSpec:
    method: str
    name: str
    index: int  # position in the file's method list
    stages: int | None = None
    draft_layers: int | None = None
    steps: int | None = None
    gamma: int | None = None
    cost_ratio: float | None = None
    split: tuple[int, ...] | None = None  # explicit layers per stage
    width: int = 1  # draft tree width (SPD uses 1; room for W > 1)
    acceptance: Acceptance | None = None  # overrides the scenario's
    stage_forward_ms: tuple[Latency, ...] | None = None  # per-stage forward times, overriding layers x layer
    placement: Placement | None = None
    extra: dict = field(default_factory=dict)  # method-specific keys validated by the method module

    @property
    def field_prefix(self) -> str:
        return f"methods[{self.index}]"


@dataclass(frozen=True)
class Scenario:
    target: Target
    methods: tuple[MethodSpec, ...]
    acceptance: Acceptance | None = None
    timing: Timing | None = None  # None: only theoretical (layer-unit) speedups can be computed
    topology: Topology = Topology()
    name: str | None = None
    description: str | None = None
    version: int = SCENARIO_VERSION
    source: str | None = None  # file it was read from, for messages

    def acceptance_for(self, spec: MethodSpec) -> Acceptance:
        acc = spec.acceptance or self.acceptance
        if acc is None:
            raise InputError(f"{where(self.source, spec.field_prefix)}.acceptance: no acceptance given (set a top-level or per-method 'acceptance')")
        return acc

    def ar_token_ms(self) -> float:
        """Single-device AR step, the denominator of every wall-clock speedup (default: layers x layer)."""
        t = self.require_timing(None, "ar_token", allow_default=True)
        return t

    def require_timing(self, spec: MethodSpec | None, name: str, allow_default: bool = False) -> float:
        """Mean of a timing in ms, or an InputError naming the method that needs it."""
        who = f" (needed by {spec.field_prefix} '{spec.method}')" if spec else ""
        if self.timing is None:
            raise InputError(f"{where(self.source, 'timing_ms')}: missing{who}; wall-clock predictions need timings")
        lat = getattr(self.timing, name)
        if lat is None:
            if name == "ar_token" and self.timing.layer is not None:
                return self.target.layers * self.timing.layer.mean_ms
            raise InputError(f"{where(self.source, 'timing_ms.' + name)}: missing{who}")
        return lat.mean_ms

    def with_methods(self, methods: list[MethodSpec]) -> "Scenario":
        return replace(self, methods=tuple(replace(m, index=i) for i, m in enumerate(methods)))


# ------------------------------------------------------------------------------------------- parsing
_TOP_KEYS = {"version", "name", "description", "target", "timing_ms", "acceptance", "topology", "methods"}
_METHOD_KEYS = {
    "method", "name", "stages", "draft_layers", "steps", "gamma", "cost_ratio", "split", "width",
    "acceptance", "stage_forward_ms", "placement",
}


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{src}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{src}: cannot read ({exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{src}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_scenario(obj, src, base_dir=path.parent)


def parse_scenario(obj: Any, src: str | None = None, base_dir: Path | None = None) -> Scenario:
    if not isinstance(obj, dict):
        raise InputError(f"{where(src, '(top level)')}: expected a JSON object")
    _known_keys(obj, _TOP_KEYS, src, "(top level)")
    version = obj.get("version", SCENARIO_VERSION)
    if version != SCENARIO_VERSION:
        raise InputError(f"{where(src, 'version')}: unsupported scenario version {version!r} (this build reads version {SCENARIO_VERSION})")

    t = obj.get("target")
    if not isinstance(t, dict):
        raise InputError(f"{where(src, 'target')}: required object with 'layers'")
    _known_keys(t, {"layers", "name", "hidden_size"}, src, "target")
    target = Target(
        layers=_int(t.get("layers"), src, "target.layers", minimum=1),
        name=_opt_str(t.get("name"), src, "target.name"),
        hidden_size=None if t.get("hidden_size") is None else _int(t["hidden_size"], src, "target.hidden_size", minimum=1),
    )

    timing = None
    if "timing_ms" in obj:
        tm = obj["timing_ms"]
        if not isinstance(tm, dict):
            raise InputError(f"{where(src, 'timing_ms')}: expected an object of times in ms")
        _known_keys(tm, set(TIMING_FIELDS), src, "timing_ms")
        vals = {k: parse_latency(tm[k], src, f"timing_ms.{k}") for k in TIMING_FIELDS if k in tm}
        for k in ZERO_DEFAULT_TIMINGS:
            vals.setdefault(k, Latency.constant(0.0))
        timing = Timing(**vals)

    acceptance = parse_acceptance(obj["acceptance"], src, "acceptance", base_dir) if "acceptance" in obj else None
    topology = _parse_topology(obj.get("topology"), src)

    ms = obj.get("methods")
    if not isinstance(ms, list) or not ms:
        raise InputError(f"{where(src, 'methods')}: required non-empty list of methods")
    methods = tuple(_parse_method(m, i, src, base_dir) for i, m in enumerate(ms))

    scen = Scenario(
        target=target, methods=methods, acceptance=acceptance, timing=timing, topology=topology,
        name=_opt_str(obj.get("name"), src, "name"), description=_opt_str(obj.get("description"), src, "description"),
        version=version, source=src,
    )
    validate_methods(scen)
    return scen


def validate_methods(scen: Scenario) -> None:
    """Method-specific checks live with each method (sim.methods registry)."""
    from .methods import get_method

    for spec in scen.methods:
        get_method(spec.method, scen.source, spec.field_prefix).validate(spec, scen)


def _parse_method(m: Any, i: int, src: str | None, base_dir: Path | None) -> MethodSpec:
    fld = f"methods[{i}]"
    if not isinstance(m, dict):
        raise InputError(f"{where(src, fld)}: expected an object with a 'method' key")
    if "method" not in m or not isinstance(m["method"], str):
        raise InputError(f"{where(src, fld)}.method: required (one of the registered methods, see `spd predict --list-methods`)")
    from .methods import get_method  # method modules may accept extra keys of their own (e.g. spd "tokens")

    extra_keys = get_method(m["method"], src, fld).extra_keys
    _known_keys(m, _METHOD_KEYS | extra_keys, src, fld)
    oi = lambda k, lo: None if m.get(k) is None else _int(m[k], src, f"{fld}.{k}", minimum=lo)  # noqa: E731
    split = None
    if m.get("split") is not None:
        if not isinstance(m["split"], list) or not m["split"]:
            raise InputError(f"{where(src, fld)}.split: expected a list of layers per stage")
        split = tuple(_int(x, src, f"{fld}.split[{j}]", minimum=1) for j, x in enumerate(m["split"]))
    sfm = None
    if m.get("stage_forward_ms") is not None:
        if not isinstance(m["stage_forward_ms"], list) or not m["stage_forward_ms"]:
            raise InputError(f"{where(src, fld)}.stage_forward_ms: expected a list with one time per stage")
        sfm = tuple(parse_latency(x, src, f"{fld}.stage_forward_ms[{j}]") for j, x in enumerate(m["stage_forward_ms"]))
    placement = None
    if m.get("placement") is not None:
        p = m["placement"]
        if not isinstance(p, dict) or not isinstance(p.get("stages"), list):
            raise InputError(f"{where(src, fld)}.placement: expected {{\"controller\": DEV, \"stages\": [DEV, ...]}}")
        _known_keys(p, {"controller", "stages"}, src, f"{fld}.placement")
        placement = Placement(
            controller=_int(p.get("controller", 0), src, f"{fld}.placement.controller", minimum=0),
            stages=tuple(_int(d, src, f"{fld}.placement.stages[{j}]", minimum=0) for j, d in enumerate(p["stages"])),
        )
    cost_ratio = None if m.get("cost_ratio") is None else _nonneg(m["cost_ratio"], src, f"{fld}.cost_ratio")
    return MethodSpec(
        method=m["method"], name=_opt_str(m.get("name"), src, f"{fld}.name") or "", index=i,
        stages=oi("stages", None), draft_layers=oi("draft_layers", 0), steps=oi("steps", 1), gamma=oi("gamma", 1),
        cost_ratio=cost_ratio, split=split, width=oi("width", 1) or 1,
        acceptance=parse_acceptance(m["acceptance"], src, f"{fld}.acceptance", base_dir) if m.get("acceptance") is not None else None,
        stage_forward_ms=sfm, placement=placement, extra={k: m[k] for k in extra_keys if k in m},
    )


def _parse_topology(t: Any, src: str | None) -> Topology:
    if t is None:
        return Topology()
    if not isinstance(t, dict):
        raise InputError(f"{where(src, 'topology')}: expected an object")
    _known_keys(t, {"devices_per_node", "hop_intra_node", "hop_inter_node", "bandwidth_gbps"}, src, "topology")
    return Topology(
        devices_per_node=_int(t.get("devices_per_node", 8), src, "topology.devices_per_node", minimum=1),
        hop_intra_node=None if t.get("hop_intra_node") is None else parse_latency(t["hop_intra_node"], src, "topology.hop_intra_node"),
        hop_inter_node=None if t.get("hop_inter_node") is None else parse_latency(t["hop_inter_node"], src, "topology.hop_inter_node"),
        bandwidth_gbps=None if t.get("bandwidth_gbps") is None else _nonneg(t["bandwidth_gbps"], src, "topology.bandwidth_gbps"),
    )


# ------------------------------------------------------------------------------------------- helpers
def balanced_split(layers: int, stages: int) -> tuple[int, ...]:
    """Stages get floor or ceil of layers/stages layers; the larger stages come first."""
    q, r = divmod(layers, stages)
    return tuple(q + 1 if s < r else q for s in range(stages))


def stage_split(spec: MethodSpec, target: Target) -> tuple[int, ...]:
    return spec.split if spec.split is not None else balanced_split(target.layers, spec.stages or 1)


def _known_keys(obj: dict, allowed: set[str], src: str | None, fld: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InputError(f"{where(src, fld)}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _num(v: Any, src: str | None, fld: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where(src, fld)}: expected a finite number, got {v!r}")
    return float(v)


def _nonneg(v: Any, src: str | None, fld: str) -> float:
    x = _num(v, src, fld)
    if x < 0:
        raise InputError(f"{where(src, fld)}: must be >= 0, got {v!r}")
    return x


def _prob(v: Any, src: str | None, fld: str) -> float:
    x = _num(v, src, fld)
    if not 0.0 <= x <= 1.0:
        raise InputError(f"{where(src, fld)}: a probability must lie in [0, 1], got {v!r}")
    return x


def _int(v: Any, src: str | None, fld: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise InputError(f"{where(src, fld)}: expected an integer, got {v!r}")
    if minimum is not None and v < minimum:
        raise InputError(f"{where(src, fld)}: must be >= {minimum}, got {v}")
    return v


def _opt_str(v: Any, src: str | None, fld: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise InputError(f"{where(src, fld)}: expected a string")
    return v
