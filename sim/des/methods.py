"""Per-method simulation behind one interface, keyed by the same names as ``sim.methods``.

Two families share the machinery: pipeline methods (``ar_pipeline``, ``spd``, ``ppsd``) run the
controller + stage-worker dataflow (``dataflow.py``) or its exact recurrence (``fast.py``);
single-device methods (``ar``, ``sd``, ``eagle3``) run one rank (``single.py``, ``fast.py``).
A method says which of its acceptance processes it uses and when the fast model is exact.
"""
from __future__ import annotations

from typing import ClassVar

from ..errors import InputError, where
from ..scenario import MethodSpec, Scenario
from . import dataflow, fast, single, speculative
from .acceptance import AcceptanceSource, ChainSource
from .fast import RawRun
from .latency import StreamSet
from .plan import CycleCosts, PipelinePlan, SinglePlan, pipeline_plan, single_plan
from .trace import TraceRecorder

DES_REGISTRY: dict[str, "DesMethod"] = {}


def _register(cls):
    DES_REGISTRY[cls.name] = cls()
    return cls


class DesMethod:
    name: ClassVar[str]

    def plan(self, scenario: Scenario, spec: MethodSpec, costs: CycleCosts | None):
        raise NotImplementedError

    def fast_blocker(self, plan) -> str | None:
        """Why the fast recurrence would not be exact for this plan (None: it is exact)."""
        raise NotImplementedError

    def run(self, model: str, plan, tokens: int, streams: StreamSet, scenario: Scenario, spec: MethodSpec, seed: int,
            trace: TraceRecorder | None) -> tuple[RawRun, int]:
        """Simulate; returns the raw run and how often a replayed acceptance sequence wrapped."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------- pipelines
class _Pipeline(DesMethod):
    uses_acceptance: ClassVar[bool] = True

    def plan(self, scenario, spec, costs) -> PipelinePlan:
        return pipeline_plan(scenario, spec, costs)

    def fast_blocker(self, plan: PipelinePlan) -> str | None:
        if plan.shared_devices:
            devs = (plan.controller_device,) + plan.stage_devices
            dup = sorted({d for d in devs if devs.count(d) > 1})
            return f"device(s) {dup} host several ranks (their work queues)"
        # A stage's input must be in before the next GO, which waits for the same stage's report:
        # guaranteed when the stage->stage link is constant and no slower than the stage->rank 0 link.
        # (Random times of the work itself, of the last stage's report and of the GO broadcast are fine:
        # the recurrence draws them per cycle in the dataflow model's order.)
        quiet = [s for s, r in enumerate(plan.reports[:-1], start=1) if not r]
        if quiet:  # its output's arrival at the next stage is no longer bounded by the next GO (which waits for reports)
            return f"stage {quiet[0]} sends rank 0 nothing (the next stage may wait for its input)"
        for s, (nx, rp) in enumerate(zip(plan.next_hop, plan.report_hop), start=1):
            if not (nx.is_constant and rp.is_constant):
                return f"stage {s}'s links have random latency"
            if nx.mean_ms > rp.mean_ms:
                return f"link stage {s}->{s + 1} ({nx.mean_ms:g} ms) is slower than stage {s}->rank 0 ({rp.mean_ms:g} ms)"
        return None

    def run(self, model, plan, tokens, streams, scenario, spec, seed, trace):
        acc = AcceptanceSource(scenario.acceptance_for(spec), seed) if self.uses_acceptance else None
        if model == "fast":
            raw = fast.run_pipeline(plan, tokens, streams, acc)
        else:
            raw = dataflow.run_pipeline(plan, tokens, streams, acc, trace)
        return raw, acc.wraps if acc else 0


@_register
class SPD(_Pipeline):
    name = "spd"

    def plan(self, scenario, spec, costs):
        if spec.width != 1:  # room for W > 1: a tree of W candidates per cycle needs its own acceptance process
            raise InputError(f"{where(scenario.source, spec.field_prefix)}.width: the simulator models width 1, got {spec.width}")
        return super().plan(scenario, spec, costs)


@_register
class SPDSpeculative(SPD):
    """SPD with speculative control: the next GO before the verify (``speculative.py``)."""
    name = "spd_speculative"

    def fast_blocker(self, plan):
        return "speculative control: GOs run ahead of the stages (the dataflow model)"

    def run(self, model, plan, tokens, streams, scenario, spec, seed, trace):
        acc = AcceptanceSource(scenario.acceptance_for(spec), seed)
        return speculative.run_pipeline(plan, tokens, streams, acc, trace), acc.wraps


@_register
class PPSD(_Pipeline):
    name = "ppsd"


@_register
class ARPipeline(_Pipeline):
    name = "ar_pipeline"
    uses_acceptance = False

    def fast_blocker(self, plan):
        return None  # one token in flight: nothing ever overlaps or queues, the recurrence is exact


# ---------------------------------------------------------------------------------- single device
class _Single(DesMethod):
    def plan(self, scenario, spec, costs) -> SinglePlan:
        return single_plan(scenario, spec, costs)

    def fast_blocker(self, plan):
        return None  # one device, strictly serial: the recurrence is always exact

    def run(self, model, plan, tokens, streams, scenario, spec, seed, trace):
        chain = ChainSource(scenario.acceptance_for(spec), plan.steps, seed) if plan.steps else None
        if model == "fast":
            raw = fast.run_single(plan, tokens, streams, chain)
        else:
            raw = single.run_single(plan, tokens, streams, chain, trace)
        return raw, chain.wraps if chain else 0


@_register
class AR(_Single):
    name = "ar"


@_register
class SD(_Single):
    name = "sd"


@_register
class Eagle3(_Single):
    name = "eagle3"


def get_des_method(spec: MethodSpec, scenario: Scenario) -> DesMethod:
    m = DES_REGISTRY.get(spec.method)
    if m is None:
        raise InputError(f"{where(scenario.source, spec.field_prefix)}.method: the simulator has no model of {spec.method!r} "
                         f"(simulated: {', '.join(sorted(DES_REGISTRY))})")
    return m
