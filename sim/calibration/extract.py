"""From one executor trace (``sim.traces.Trace``) to the samples calibration fits: :class:`RunMeasurement`.

Definitions (all durations in ms, on rank 0's clock; docs/calibration.md):

* stage forward: a rank's one-token ``forward`` event (decode cycles only, prefill excluded);
* control: rank 0's cycle start -> end of its control broadcast (``ctrl_send``);
* control hop: end of that broadcast -> start of stage 1's forward (control delivery + input receive);
* stage start (SPD): end of that broadcast -> start of the forward of stages 2..n (control delivery to their
  thread or process + the receive of the input sent in the previous cycle);
* send: a stage's send of its output to the next stage (sender side), paid before it reports to rank 0;
* report: a stage's forward end -> end of rank 0's receive of its output, in cycles where that receive was
  posted before the forward ended (rank 0 waiting): the gap, the sends (a stage sends rank 0 its output before
  the next stage), the transfer and the receive; by link type;
* hop: a matched hidden-state message, receive end minus the later of send start and receive start
  (``sim.traces.Hop``), by link type (same device / intra node / inter node) and size;
* verify: rank 0's part of finishing a token (norm, head, verify, bookkeeping, and whatever the receive of
  the last stage's output takes beyond its report): from the later of that receive's start and the last stage's
  forward end plus the run's median report from it (the report the model charges) to the end of the
  ``verify`` event, less the part of rank 0's other receives spent waiting for data not yet there (the runtime
  launches the head as soon as that output arrives and receives earlier stages' anchors after it: receiving
  data that is there is rank 0's serial work, a wait for a later stage belongs to that stage's path); the
  ``verify`` event alone when the cycle has no such receive (from the receive's end when the run has no
  report measured). Cycles in which no token finished (SPD filling the pipeline after the prefill or a flush:
  cycle event ``fill``) are kept apart as ``verify_fill``: rank 0 only inserts the next draft there, no head
  and no verification;
* head: rank 0's ``head`` event (the LM head on the last stage's output, before the other outputs are received);
* collect (SPD): in cycles whose draft outlasted the stages (every output to rank 0 sent before it ended), the
  draft's end -> the start of the verify clock above (a cost of the draft's path);
* bookkeeping: the gap between one cycle record's end and the next one's start (loop overhead);
* flush: mean duration of DISCARD cycles minus mean duration of the GO cycles with one token in flight
  (the same work without the KV crop and discard);
* AR step: single-device decode time per token (prompt decode time / decoded tokens).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..scenario import balanced_split
from ..traces import Trace, header_process_layout, load_trace

LATE_START_MS = 0.02  # stage 1 starting this long after the broadcast's end waited for something else
CONTROLS = ("after_verify", "speculative")  # the trace header's "control" (spd run --speculative-control)


@dataclass(frozen=True)
class ModelShape:
    """The parts of a model config that set its timing."""

    name: str
    layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int

    @property
    def key(self) -> str:
        return (f"{self.name}:d{self.hidden_size}:ffn{self.intermediate_size}:"
                f"h{self.num_heads}/{self.num_kv_heads}x{self.head_dim}:v{self.vocab_size}")

    @property
    def layer_mparams(self) -> float:
        """Weights of one decoder layer (q, k, v, o, gate/up/down, two norms), millions."""
        d, hd = self.hidden_size, self.head_dim
        attn = d * self.num_heads * hd * 2 + d * self.num_kv_heads * hd * 2
        return (attn + 3 * d * self.intermediate_size + 2 * d) / 1e6

    @property
    def head_mparams(self) -> float:
        """The output head (vocab x d), millions: what verify's logits cost."""
        return self.vocab_size * self.hidden_size / 1e6

    @staticmethod
    def from_config(cfg: dict, src: str = "model") -> "ModelShape":
        try:
            return ModelShape(str(cfg.get("name", "custom")), int(cfg["num_layers"]), int(cfg["hidden_size"]),
                              int(cfg["intermediate_size"]), int(cfg["num_heads"]), int(cfg["num_kv_heads"]),
                              int(cfg["head_dim"]), int(cfg["vocab_size"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{src}: model shape: missing or bad field ({exc})") from None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def link_type_of(da: str, db: str) -> str:
    """The link between two "host/device" labels: same_device, intra_node or inter_node."""
    if da == db:
        return "same_device"
    return "intra_node" if da.split("/")[0] == db.split("/")[0] else "inter_node"


@dataclass(frozen=True)
class StageSample:
    stage: int  # 0-based
    layers: int
    ranks_on_device: int
    ms: float
    # who else computes on this stage's device: stages (this one included) and whether rank 0 is there
    stages_on_device: int = 1
    with_rank0: bool = False


@dataclass(frozen=True)
class PromptRun:
    tokens: int  # N - 1 decoded tokens (the prefill token is not timed)
    accepts: tuple[int, ...]
    decode_ms: float


@dataclass
class RunMeasurement:
    """Everything calibration and validation need from one run directory."""

    path: str
    method: str  # ar | ar_pipeline | spd
    n: int
    shape: ModelShape
    split: tuple[int, ...]
    rank_devices: tuple[str, ...]  # "host/device" per rank
    draft_source: str | None
    draft_layers: int
    alpha: float | None
    temperature: float
    environment: dict
    prompts: list[PromptRun]
    stage: list[StageSample] = field(default_factory=list)
    draft: list[tuple[int, float]] = field(default_factory=list)  # (rows, ms)
    verify_ms: list[float] = field(default_factory=list)
    verify_fill_ms: list[float] = field(default_factory=list)  # SPD cycles in which no token finished
    control_ms: list[float] = field(default_factory=list)
    control_hop_ms: list[float] = field(default_factory=list)
    # cycle start -> stage 1's forward start, in cycles where stage 1 began later than LATE_START_MS after the
    # broadcast had ended (it waited for its thread to wake in the process it shares with rank 0)
    stage1_late_start_ms: list[float] = field(default_factory=list)
    # SPD: end of rank 0's broadcast -> forward start of stages 2..n (control delivery to their thread or process
    # and the receive of the input their predecessor sent in the previous cycle); stage 1's is ``control_hop_ms``
    stage_start_ms: list[float] = field(default_factory=list)
    send_ms: list[float] = field(default_factory=list)
    bookkeeping_ms: list[float] = field(default_factory=list)
    flush_ms: float | None = None
    hops: list[tuple[str, int, float]] = field(default_factory=list)  # (link type, bytes, latency ms)
    # the same messages, latency counted from the end of the sender-side send of a hidden state (which the
    # model charges to the sending stage): receive end - max(send end, receive start); collect / final
    # messages (whose send is not charged separately) keep the full latency
    net_hops: list[tuple[str, int, float]] = field(default_factory=list)
    collect_ms: list[float] = field(default_factory=list)  # SPD, draft-bound cycles: draft end -> verify clock start
    # (link type, ms): a stage's forward end -> rank 0 has its output, in cycles where rank 0 was already waiting
    # for it (its receive posted before that forward ended): the gap, the sends, the transfer and the receive
    report_ms: list[tuple[str, float]] = field(default_factory=list)
    # rank 0's LM head on the last stage's output (runtimes that record it), launched before the other outputs
    # are received
    head_ms: list[float] = field(default_factory=list)
    reporting: tuple[int, ...] = ()  # the stages (1-based) that sent rank 0 their output in decode cycles
    trace_level: str = "full"  # "cycle": a validation target only (no per-op samples)
    # The executor variant (trace header): one-token step kernels, and how ranks sharing a device map to
    # processes. Timings of different variants are not interchangeable: profiles fit one variant.
    kernels: str = "reference"  # traces written before the header had the field ran the reference kernels
    processes: str = "per-rank"  # per-device | per-rank | mixed (sim.traces.process_layout)
    draft_graphs: bool = False  # the draft forward replayed from CUDA graphs (the CUDA default since session 3)
    # SPD: when rank 0 sends GO, "after_verify" (the default) or "speculative" (before the verify; a validation
    # target only, predicted as method spd_speculative from the other runs' SPD terms)
    control: str = "after_verify"
    pin_cpus: bool = False  # `spd run --pin-cpus`: each process on its own block of CPUs (header, since session 10)
    created_unix_s: float | None = None  # when the run started (trace header): twins are runs of one session
    ar_step_ms: list[float] = field(default_factory=list)
    # pipeline runs, both trace levels: decode-cycle durations (ms) of the measured prompts by cycle event
    # (accept | reject | fill | ar); a full trace and its cycle-level twin show what the tracing costs
    cycle_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        """The executor variant as part of the configuration; CPU pinning makes another configuration (its runs are
        not repeats of unpinned ones) but not another variant to fit (``same_variant``)."""
        pin = " pinned-cpus" if self.pin_cpus else ""
        if self.method == "ar":
            return f"kernels={self.kernels}{pin}"
        return f"kernels={self.kernels} processes={self.processes}" + (" draft-graphs" if self.draft_graphs else "") + pin

    def same_variant(self, other: "RunMeasurement") -> bool:
        """Same kernels; between two pipeline runs the same process layout; between two SPD runs the same
        draft execution (AR has no process layout, the AR pipeline no draft)."""
        if self.kernels != other.kernels or "ar" in (self.method, other.method):
            return self.kernels == other.kernels
        both_draft = self.method == "spd" and other.method == "spd"
        return self.processes == other.processes and (not both_draft or self.draft_graphs == other.draft_graphs)

    def variant(self) -> dict:
        """What a profile records of each run it was fitted on (``Profile.source["variants"]``)."""
        return {"method": self.method, "kernels": self.kernels, "processes": self.processes,
                "draft_graphs": self.draft_graphs}

    def fits_profile(self, variants: list[dict]) -> bool:
        """Whether a profile fitted on runs of these variants describes this run's executor (True when the
        profile predates the record)."""
        if not variants:
            return True
        fitted = [replace(self, **v) for v in variants]
        if self.method != "ar":  # a pipeline run needs a pipeline run of its variant; an SPD run an SPD run if any
            fitted = [f for f in fitted if f.method != "ar"]
            spd = [f for f in fitted if f.method == "spd"]
            fitted = spd if self.method == "spd" and spd else fitted
        return any(self.same_variant(f) for f in fitted)

    @property
    def fittable(self) -> bool:
        return self.method == "ar" or (self.trace_level == "full" and self.control == "after_verify")

    @property
    def model_method(self) -> str:
        """The simulator's method for this run (speculative control is a method of its own there)."""
        return "spd_speculative" if self.control == "speculative" else self.method

    @property
    def decode_tokens(self) -> int:
        return sum(p.tokens for p in self.prompts)

    @property
    def decode_ms(self) -> float:
        return sum(p.decode_ms for p in self.prompts)

    @property
    def tokens_per_s(self) -> float:
        return 1000.0 * self.decode_tokens / self.decode_ms if self.decode_ms > 0 else float("nan")

    def ranks_on_device(self, rank: int) -> int:
        return sum(1 for d in self.rank_devices if d == self.rank_devices[rank])

    def stages_on_device(self, rank: int) -> int:
        """Pipeline stages (ranks 1..n) on the device of ``rank``."""
        return sum(1 for d in self.rank_devices[1:] if d == self.rank_devices[rank])

    def link_type(self, a: int, b: int) -> str:
        return link_type_of(self.rank_devices[a], self.rank_devices[b])

    @property
    def config_key(self) -> str:
        """Runs with the same key are the same configuration (only seeds / prompts differ): leave-one-
        configuration-out holds all of them out together."""
        draft = "" if self.method != "spd" else f" draft={self.draft_source}:{self.draft_layers}" + (
            f":a{self.alpha:g}" if self.alpha is not None else "")
        return (f"{self.model_method} n={self.n} {self.shape.key} split={'/'.join(map(str, self.split))}{draft} "
                f"T={self.temperature:g} ranks={','.join(self.rank_devices)} {self.runtime}")

    @property
    def label(self) -> str:
        draft = f" {self.draft_source} Ls={self.draft_layers}" + (f" a={self.alpha:g}" if self.alpha is not None else "") \
            if self.method == "spd" else ""
        # what differs from the GPU default (fused kernels, a process per device, draft from CUDA graphs)
        notes = [self.kernels] if self.kernels != "fused" else []
        notes += [self.processes] if self.method != "ar" and self.processes != "per-device" else []
        notes += ["eager draft"] if self.method == "spd" and not self.draft_graphs and self.kernels != "reference" else []
        notes += ["pinned CPUs"] if self.pin_cpus else []
        notes += [f"split {'/'.join(map(str, self.split))}"] if self.split != balanced_split(self.shape.layers, self.n) else []
        variant = f" [{', '.join(notes)}]" if notes else ""
        return f"{self.shape.name} {self.model_method} n={self.n}{draft}{variant}"


def _ms(ns: int) -> float:
    return ns / 1e6


def _kernels(h: dict) -> str:
    """The step kernels of a trace header; ``+eager`` when a CUDA run did not replay its steps from graphs."""
    k = str(h.get("kernels") or "reference")  # traces written before the header had the field ran the reference kernels
    on_cuda = any(str(d).startswith("cuda") for d in h.get("rank_devices") or [])
    return f"{k}+eager" if on_cuda and h.get("cuda_graphs") is False else k


def _verify_start(final: list, due_ns: int | None) -> int:
    """When rank 0's verify clock starts: the later of the final receive's start and the time the last stage's
    output is due at rank 0 (its forward end plus the run's median report from it), or that receive's end when
    no report was measured."""
    return max(final[-1].t0_ns, due_ns) if due_ns is not None else final[-1].t1_ns


def _verify_ms(verify, recvs: list, final_link: str, due_ns: int | None, arrived: dict) -> float:
    """See the module docstring: the last stage's output due (or its receive posted) -> verify end, less the time
    other receives waited for data not yet there (``arrived``: when a receive's data was at rank 0; receiving data
    that was there is rank 0's own serial work, a wait for a later stage is that stage's critical path)."""
    final = [r for r in recvs if r.extra.get("link") == final_link]
    if not final:
        return verify.duration_ms
    start = _verify_start(final, due_ns)
    waited = sum(max(min(r.t1_ns, arrived.get(id(r), r.t1_ns)) - max(r.t0_ns, start), 0)
                 for r in recvs if r is not final[-1] and r.t1_ns > start)
    return max(_ms(verify.t1_ns - start - waited), verify.duration_ms)


def measure(path: str | Path, require_full: bool = True) -> RunMeasurement:
    """Load one run directory and extract its samples (InputError on a trace that cannot be used).
    ``require_full=False`` accepts cycle-level pipeline traces (validation targets: tokens/s and the
    accept sequence only, no per-op samples)."""
    return measure_trace(load_trace(path), require_full)


def measure_trace(tr: Trace, require_full: bool = True) -> RunMeasurement:
    h = tr.header
    src = str(tr.path)
    if "model" not in h or not isinstance(h["model"], dict):
        raise InputError(f"{src}: header: no model config (needed to relate times to the model's shape)")
    shape = ModelShape.from_config(h["model"], f"{src}: header.model")
    if not tr.prompts:
        raise InputError(f"{src}: no prompt records: the run has no measured generation")
    level = tr.header.get("trace_level") or "full"
    if require_full and level != "full" and tr.method != "ar":
        raise InputError(f"{src}: trace_level {tr.header.get('trace_level')!r}: calibration needs per-op events "
                         "(--trace full); a cycle-level trace can only be validated against, not fitted")
    control = str(h.get("control") or "after_verify")
    if control not in CONTROLS:
        raise InputError(f"{src}: control {control!r}: expected one of {', '.join(CONTROLS)}")
    if control == "speculative" and require_full:
        raise InputError(f"{src}: control 'speculative' (spd run --speculative-control): its rank 0 sends each GO "
                         "before the verify, so its per-op records do not describe the cost terms a profile fits; "
                         "calibrate on runs without --speculative-control and validate these against it")
    split = tuple(int(b - a) for a, b in h.get("stage_layers") or [[0, shape.layers]])
    devs = h.get("rank_devices") or ["cpu"]
    hosts = h.get("hosts") or ["localhost"] * len(devs)
    rank_devices = tuple(f"{hosts[i] if i < len(hosts) else hosts[0]}/{d}" for i, d in enumerate(devs))
    draft = h.get("draft") or {}
    env = dict(h.get("env") or {})
    env["device_names"] = sorted(set(h.get("device_names") or []))
    m = RunMeasurement(
        path=src, method=tr.method, n=tr.n, shape=shape, split=split, rank_devices=rank_devices,
        draft_source=draft.get("source") if tr.method == "spd" else None,
        draft_layers=int(draft.get("layers") or 0) if tr.method == "spd" else 0,
        alpha=(float(draft["alpha"]) if draft.get("alpha") is not None else None) if tr.method == "spd" else None,
        temperature=float(h.get("temperature", 0.0)), environment=env,
        prompts=[PromptRun(p.N - 1, tuple(int(a) for a in p.accepts), _ms(p.decode_ns)) for p in tr.prompts if p.N >= 2],
        trace_level=str(level), kernels=_kernels(h),
        processes=header_process_layout(h),
        draft_graphs=bool(draft.get("graphs")) if tr.method == "spd" else False, control=control,
        pin_cpus=bool(h.get("pin_cpus")),
        created_unix_s=float(h["created_unix_s"]) if h.get("created_unix_s") is not None else None,
    )
    if m.method == "ar":
        m.ar_step_ms = [p.decode_ms / p.tokens for p in m.prompts if p.tokens > 0]
        return m
    for c in tr.cycles:
        if c.prompt >= 0 and c.cycle > 0:
            m.cycle_ms.setdefault(c.event, []).append(c.duration_ms)
    if level == "full" and control == "after_verify":
        _pipeline_samples(tr, m)
    return m


def _pipeline_samples(tr: Trace, m: RunMeasurement) -> None:
    cycles = {(c.prompt, c.cycle): c for c in tr.cycles}
    ctrl = {(e.prompt, e.cycle): e for e in tr.select("ctrl_send", 0) if e.cycle > 0}
    final_link = f"{m.n}->0"
    recvs0 = defaultdict(list)
    for e in tr.select("recv", 0):
        recvs0[(e.prompt, e.cycle)].append(e)
    hops = tr.hops()
    # when the data a receive of rank 0 takes was there: its send's end + the run's median send end -> receive end on
    # that link where rank 0 was already waiting (what rank 0 waited for before that is a stage's path, not its work)
    ready = defaultdict(list)
    for hop in hops:
        if hop.link.endswith("->0") and hop.send.cycle > 0 and hop.recv.t0_ns <= hop.send.t1_ns:
            ready[hop.link].append(hop.recv.t1_ns - hop.send.t1_ns)
    lat = {link: int(np.median(v)) for link, v in ready.items()}
    arrived = {id(hop.recv): hop.send.t1_ns + lat.get(hop.link, 0) for hop in hops}
    fwd_end = {(e.prompt, e.cycle, e.rank): e.t1_ns for e in tr.select("forward") if e.cycle > 0}
    last = []
    m.reporting = tuple(sorted({int(h.link.split("->")[0]) for h in hops if h.link.endswith("->0") and h.send.cycle > 0}))
    for hop in hops:  # report: a stage's forward end -> rank 0 has its output, where rank 0 was waiting for it
        a, b = (int(x) for x in hop.link.split("->"))
        f = fwd_end.get((hop.send.prompt, hop.send.cycle, a)) if b == 0 and hop.send.cycle > 0 else None
        if f is not None and hop.recv.t0_ns <= f:
            m.report_ms.append((m.link_type(a, 0), _ms(hop.recv.t1_ns - f)))
            last += [hop.recv.t1_ns - f] if a == m.n else []
    # when the finished token's output is due at rank 0: the last stage's forward end + the run's median report
    report_ns = int(np.median(last)) if last else None
    final_due = {} if report_ns is None else {  # none measured: verify starts at the receive's end
        (p, c): t + report_ns for (p, c, r), t in fwd_end.items() if r == m.n}
    for e in tr.events:
        if e.cycle <= 0:
            continue  # prefill / warm-up
        if e.name == "forward" and e.rank >= 1:
            s = e.rank - 1
            m.stage.append(StageSample(s, m.split[s], m.ranks_on_device(e.rank), e.duration_ms,
                                       m.stages_on_device(e.rank), m.rank_devices[e.rank] == m.rank_devices[0]))
            if s == 0 and (e.prompt, e.cycle) in ctrl:
                hop = _ms(e.t0_ns - ctrl[(e.prompt, e.cycle)].t1_ns)
                m.control_hop_ms.append(max(hop, 0.0))  # >= 0: clock residual
                c = cycles.get((e.prompt, e.cycle))
                if c is not None and hop > LATE_START_MS:
                    m.stage1_late_start_ms.append(_ms(e.t0_ns - c.t0_ns))
            elif s > 0 and m.method == "spd" and (e.prompt, e.cycle) in ctrl:
                m.stage_start_ms.append(max(_ms(e.t0_ns - ctrl[(e.prompt, e.cycle)].t1_ns), 0.0))
        elif e.name == "draft" and e.rank == 0 and (e.prompt, e.cycle) in cycles:
            m.draft.append((cycles[(e.prompt, e.cycle)].in_flight + 1, e.duration_ms))
        elif e.name == "verify" and e.rank == 0:
            c = cycles.get((e.prompt, e.cycle))
            if c is not None and c.event == "fill":  # no token finished: no head, no verification
                m.verify_fill_ms.append(e.duration_ms)
            else:
                m.verify_ms.append(_verify_ms(e, recvs0.get((e.prompt, e.cycle), []), final_link,
                                              final_due.get((e.prompt, e.cycle)), arrived))
        elif e.name == "send" and e.rank >= 1 and e.extra.get("what") == "hidden":
            m.send_ms.append(e.duration_ms)
        elif e.name == "head" and e.rank == 0:
            m.head_ms.append(e.duration_ms)
    for key, c in cycles.items():
        if key in ctrl:
            m.control_ms.append(_ms(ctrl[key].t1_ns - c.t0_ns))
    by_prompt = defaultdict(list)
    for c in tr.cycles:
        by_prompt[c.prompt].append(c)
    for cs in by_prompt.values():
        cs.sort(key=lambda c: c.cycle)
        m.bookkeeping_ms.extend(_ms(b.t0_ns - a.t1_ns) for a, b in zip(cs, cs[1:]))
    # flush: a reject cycle plus the DISCARD cycle after it, against an accept cycle plus a GO cycle with
    # one token in flight (the executor crops in the DISCARD cycle, the simulator charges the reject cycle)
    nxt = {(c.prompt, c.cycle): cycles.get((c.prompt, c.cycle + 1)) for c in tr.cycles}
    pairs = [c.duration_ms + nxt[(c.prompt, c.cycle)].duration_ms for c in tr.cycles
             if c.event == "reject" and nxt[(c.prompt, c.cycle)] is not None]
    acc = [c.duration_ms for c in tr.cycles if c.event == "accept"]
    go1 = [c.duration_ms for c in tr.cycles if c.control == "GO" and c.in_flight == 1]
    if pairs and acc and go1:
        m.flush_ms = max(float(np.mean(pairs) - np.mean(acc) - np.mean(go1)), 0.0)
    for hop in hops:
        a, b = (int(x) for x in hop.link.split("->"))
        lt, nb = m.link_type(a, b), int(hop.send.extra.get("bytes") or 0)
        m.hops.append((lt, nb, hop.latency_ns / 1e6))
        if hop.send.cycle > 0:
            start = hop.send.t1_ns if hop.send.extra.get("what") == "hidden" else hop.send.t0_ns
            m.net_hops.append((lt, nb, max(hop.recv.t1_ns - max(start, hop.recv.t0_ns), 0) / 1e6))
    # a draft that outlasted the stages (every output to rank 0 was sent before it ended): from its end to the
    # start of rank 0's verify clock (rank 0 posting the final receive); what follows is verify's
    drafts = {(e.prompt, e.cycle): e for e in tr.select("draft", 0) if e.cycle > 0}
    verifies = {(e.prompt, e.cycle): e for e in tr.select("verify", 0) if e.cycle > 0}
    coll_end: dict = defaultdict(int)
    for e in tr.select("send"):
        if e.cycle > 0 and e.extra.get("peer") == 0:
            coll_end[(e.prompt, e.cycle)] = max(coll_end[(e.prompt, e.cycle)], e.t1_ns)
    for key, d in drafts.items():
        final = [r for r in recvs0.get(key, []) if r.extra.get("link") == final_link]
        if key in verifies and final and key in coll_end and coll_end[key] <= d.t1_ns:
            m.collect_ms.append(max(_ms(_verify_start(final, final_due.get(key)) - d.t1_ns), 0.0))
