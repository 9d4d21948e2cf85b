"""What one simulated method needs, read from a scenario: stage times, placement, links, fixed costs.

This is the bridge between the scenario file (``sim.scenario``) and the simulator core. Everything
here is a typed, immutable description; the models (``fast.py``, ``dataflow.py``, ``single.py``)
only read it. The calibration code can build or alter these objects directly (e.g. per-stage
empirical forward times, a measured verify/bookkeeping split) without writing a scenario file.

Ranks: 0 is the controller (embedding, draft module, final norm + LM head, verify logic);
1..n are the stages. Devices are integers; a device's node is ``device // devices_per_node``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InputError, where
from ..scenario import Latency, MethodSpec, Scenario, stage_split
from .latency import Term, TimeSpec

BF16_BYTES = 2


@dataclass(frozen=True)
class CycleCosts:
    """Serial controller work per cycle/round, each separately settable (ms distributions).

    ``control``: control message / launch work before the stage forwards (scenario: cycle_overhead);
    ``verify``: final norm + LM head + accept/reject decision (scenario: verify);
    ``bookkeeping``: KV/bookkeeping and the end-of-cycle sync (scenario: none, 0);
    ``flush``: extra work on a reject (DISCARD broadcast, KV crop) (scenario: none, 0);
    ``control_hop``: latency of the GO broadcast reaching the stages (scenario: none, 0 - the
    published fixed cost includes it in ``control``);
    ``verify_fill``: the controller's work in an SPD/PPSD cycle in which no token finishes (the pipeline
    filling after the prefill or a flush: no head, no verification); None = ``verify`` (scenario: none).
    ``head``: the part of ``verify`` that needs only the last stage's output (the LM head, launched on it while
    earlier stages' outputs are still on their way); the rest of ``verify`` waits for every stage that reports
    (scenario: none, 0: all of verify waits for every report).
    ``credit``: ms taken off every cycle of an event (``accept``, ``reject``, ``fill``; ``ar`` for the AR pipeline)
    as a whole: what an uninstrumented run saves per cycle beyond what came off the serial costs above (a
    calibration's trace overhead; scenario: none). The speculative-control model ignores it.
    ``stage_start``: per stage, its wait between the GO reaching it (``control_hop``) and its forward (control
    delivery beyond stage 1's, the receive of its input); None: none (scenario: none).
    ``report_hop``: per stage, forward end -> rank 0 has its output (sends, transfer, receive), overriding the
    link's latency; a None entry or None: the link's latency (scenario: none).
    ``report_stages``: the stages (1-based) that send their output to the controller every cycle they run (SPD:
    the stages holding the draft module's anchor layers, and the last); None: every stage (scenario: none).
    The closed form's ``cycle_overhead + verify`` is ``control + verify + bookkeeping`` here.
    """

    control: TimeSpec = TimeSpec()
    verify: TimeSpec = TimeSpec()
    bookkeeping: TimeSpec = TimeSpec()
    flush: TimeSpec = TimeSpec()
    control_hop: TimeSpec = TimeSpec()
    verify_fill: TimeSpec | None = None
    head: TimeSpec = TimeSpec()
    report_stages: tuple[int, ...] | None = None
    credit: dict[str, float] = field(default_factory=dict)
    stage_start: tuple[TimeSpec, ...] | None = None
    report_hop: tuple[TimeSpec | None, ...] | None = None

    @staticmethod
    def from_scenario(scenario: Scenario) -> "CycleCosts":
        t = scenario.timing
        return CycleCosts(control=TimeSpec.of(t.cycle_overhead), verify=TimeSpec.of(t.verify))


@dataclass(frozen=True)
class PipelinePlan:
    """An n-stage pipeline (ar_pipeline, spd, ppsd)."""

    method: str
    n: int
    split: tuple[int, ...]
    stage: tuple[TimeSpec, ...]  # forward time of stage s+1 (index s)
    draft: TimeSpec  # one draft forward (SPD: concurrent; PPSD: serial); empty for ar_pipeline
    costs: CycleCosts
    controller_device: int
    stage_devices: tuple[int, ...]
    next_hop: tuple[TimeSpec, ...]  # stage s+1 -> stage s+2 (index s, n-1 entries)
    report_hop: tuple[TimeSpec, ...]  # stage s+1 -> controller (index s, n entries)
    start: tuple[TimeSpec, ...] = ()  # stage s+1's wait after its GO, before its forward (empty: none)

    @property
    def reports(self) -> tuple[bool, ...]:
        """Per stage (index s): whether stage s+1 sends its output to the controller (the last one always)."""
        rs = self.costs.report_stages
        return tuple(rs is None or s + 1 in rs or s == self.n - 1 for s in range(self.n))

    @property
    def shared_devices(self) -> bool:
        devs = (self.controller_device,) + self.stage_devices
        return len(set(devs)) < len(devs)


@dataclass(frozen=True)
class SinglePlan:
    """One device (ar, sd, eagle3): per round ``steps`` serial draft steps, one target forward."""

    method: str
    target: TimeSpec  # one target forward (AR step, or the verify forward of a chain)
    draft_step: TimeSpec  # one draft step (empty for ar)
    steps: int  # drafts per round (0 for ar)
    costs: CycleCosts


# ----------------------------------------------------------------------------------------- links
def link_time(scenario: Scenario, src_dev: int, dst_dev: int, size_bytes: int | None) -> TimeSpec:
    """Latency of one message between two devices: 0 on the same device, the topology's intra- or
    inter-node hop otherwise (default ``timing_ms.hop``), plus size / bandwidth when both are known."""
    if src_dev == dst_dev:
        return TimeSpec()
    topo = scenario.topology
    hop = scenario.timing.hop if scenario.timing else None
    same_node = src_dev // topo.devices_per_node == dst_dev // topo.devices_per_node
    lat = (topo.hop_intra_node if same_node else topo.hop_inter_node) or hop
    out = TimeSpec.of(lat)
    if size_bytes and topo.bandwidth_gbps:
        out = out + TimeSpec.const(size_bytes / (topo.bandwidth_gbps * 1e9) * 1e3)
    return out


def hidden_state_bytes(scenario: Scenario) -> int | None:
    """One token's hidden state in bf16, when the target's width is known."""
    h = scenario.target.hidden_size
    return None if h is None else h * BF16_BYTES


# ------------------------------------------------------------------------------------- building
def _need(scenario: Scenario, spec: MethodSpec, name: str) -> Latency:
    """A timing the simulator needs, or an InputError naming the field."""
    if scenario.timing is None:
        raise InputError(f"{where(scenario.source, 'timing_ms')}: missing (needed by {spec.field_prefix} '{spec.method}'); the simulator needs timings")
    lat = getattr(scenario.timing, name)
    if lat is None:
        if name == "ar_token" and scenario.timing.layer is not None:
            return scenario.timing.layer.scaled(scenario.target.layers)
        raise InputError(f"{where(scenario.source, 'timing_ms.' + name)}: missing (needed by {spec.field_prefix} '{spec.method}')")
    return lat


def ar_token_spec(scenario: Scenario, spec: MethodSpec) -> TimeSpec:
    """One full single-device AR forward; a per-layer time is drawn once per forward and scaled by L."""
    t = scenario.timing
    if t is not None and t.ar_token is None and t.layer is not None:
        return TimeSpec((Term(t.layer, float(scenario.target.layers)),))
    return TimeSpec.of(_need(scenario, spec, "ar_token"))


def pipeline_plan(scenario: Scenario, spec: MethodSpec, costs: CycleCosts | None = None) -> PipelinePlan:
    n = spec.stages or 1
    split = stage_split(spec, scenario.target)
    overhead = TimeSpec.of(_need(scenario, spec, "stage_overhead"))
    if spec.stage_forward_ms is not None:
        stage = tuple(TimeSpec.of(lat) + overhead for lat in spec.stage_forward_ms)
    else:
        layer = _need(scenario, spec, "layer")
        stage = tuple(TimeSpec((Term(layer, float(k)),)) + overhead for k in split)
    draft = TimeSpec()
    if spec.method in ("spd", "ppsd", "spd_speculative"):
        draft = TimeSpec((Term(_need(scenario, spec, "draft_layer"), float(spec.draft_layers or 0)),))
    if spec.placement is not None:
        ctrl_dev, stage_devs = spec.placement.controller, tuple(spec.placement.stages)
    else:  # n + 1 ranks, one device each, in order (SPEC.md 1.3)
        ctrl_dev, stage_devs = 0, tuple(range(1, n + 1))
    size = hidden_state_bytes(scenario)
    next_hop = tuple(link_time(scenario, stage_devs[s], stage_devs[s + 1], size) for s in range(n - 1))
    costs = costs or CycleCosts.from_scenario(scenario)
    over = costs.report_hop or (None,) * n
    report_hop = tuple(over[s] if s < len(over) and over[s] is not None else
                       link_time(scenario, stage_devs[s], ctrl_dev, size) for s in range(n))
    start = tuple((tuple(costs.stage_start) + (TimeSpec(),) * n)[:n]) if costs.stage_start and any(
        t.terms for t in costs.stage_start) else ()  # a short tuple: the stages after it wait nothing
    return PipelinePlan(
        method=spec.method, n=n, split=split, stage=stage, draft=draft,
        costs=costs, controller_device=ctrl_dev, stage_devices=stage_devs,
        next_hop=next_hop, report_hop=report_hop, start=start,
    )


def single_plan(scenario: Scenario, spec: MethodSpec, costs: CycleCosts | None = None) -> SinglePlan:
    target = ar_token_spec(scenario, spec)
    costs = costs or CycleCosts.from_scenario(scenario)
    if spec.method == "ar":
        # AR is the speedup denominator: one forward per token, no controller overheads.
        return SinglePlan("ar", target, TimeSpec(), 0, CycleCosts())
    if spec.method == "eagle3":
        layers = float(spec.draft_layers or 1)  # EAGLE-3's head is one layer unless told otherwise
        return SinglePlan("eagle3", target, TimeSpec((Term(_need(scenario, spec, "draft_layer"), layers),)), int(spec.steps or 1), costs)
    if spec.method == "sd":  # a draft step costs cost_ratio x a target step (drawn from its own stream)
        step = TimeSpec(tuple(replace(t, factor=t.factor * float(spec.cost_ratio or 0.0)) for t in target.terms))
        return SinglePlan("sd", target, step, int(spec.gamma or 1), costs)
    raise ValueError(spec.method)
