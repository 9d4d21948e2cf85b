"""``simulate(scenario, spec, tokens, seed, model)``: the one entry point of the simulator.

Model choice: ``"fast"`` is the exact recurrence (``fast.py``), ``"dataflow"`` the SimPy processes
(``dataflow.py`` / ``single.py``); ``"auto"`` takes the fast one wherever it is exact (no device
shared by two ranks, constant links, no stage input that can arrive after the next GO; latencies of
the work itself may be random) and says which model ran and why. A trace is recorded by the
dataflow model, so asking for one under ``auto`` runs the dataflow model.
"""
from __future__ import annotations

import numbers

from ..errors import InputError
from ..scenario import MethodSpec, Scenario
from .latency import StreamSet
from .methods import get_des_method
from .plan import CycleCosts, PipelinePlan
from .result import SimResult, utilisation
from .trace import TraceRecorder

MODELS = ("auto", "fast", "dataflow")


def simulate(scenario: Scenario, spec: MethodSpec, tokens: int, seed: int = 0, model: str = "auto",
             costs: CycleCosts | None = None, trace: TraceRecorder | None = None) -> SimResult:
    """Simulate ``tokens`` decoded tokens of one method of a scenario.

    ``costs`` overrides the per-cycle fixed costs read from the scenario (control, verify,
    bookkeeping/sync, flush, control hop), e.g. with a measured profile. ``trace`` records a timeline.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, numbers.Integral) or tokens < 1:
        raise InputError(f"tokens: expected an integer >= 1, got {tokens!r}")
    tokens = int(tokens)
    if model not in MODELS:
        raise InputError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    method = get_des_method(spec, scenario)
    plan = method.plan(scenario, spec, costs)
    blocker = method.fast_blocker(plan)
    if model == "fast":
        if blocker:
            raise InputError(f"{scenario.source or 'scenario'}: {spec.field_prefix}: --model fast is not exact here: {blocker} (use auto or dataflow)")
        if trace is not None:
            raise InputError("--trace: the timeline comes from the dataflow model; use --model auto or dataflow")
        chosen, reason = "fast", "forced (exact here: one event-free recurrence over the accept/reject sequence)"
    elif model == "dataflow":
        chosen, reason = "dataflow", "forced"
    elif trace is not None:
        chosen, reason = "dataflow", "a trace was requested: timelines come from the dataflow model"
    elif blocker:
        chosen, reason = "dataflow", blocker
    else:
        chosen, reason = "fast", ("no shared device, constant links: the cycle is a closed expression of its draws"
                                  if isinstance(plan, PipelinePlan) else "one device, strictly serial")
    raw, wraps = method.run(chosen, plan, tokens, StreamSet(seed), scenario, spec, seed, trace)
    recs = raw.records
    time_ms = float(recs.end_ms[-1]) if len(recs) else 0.0
    k = len(recs)
    notes = []
    if wraps:
        notes.append(f"the recorded acceptance sequence was shorter than the run and was replayed {wraps + 1} times from the start")
    if isinstance(plan, PipelinePlan):
        n = plan.n
        device_of = {f"stage {s + 1}": d for s, d in enumerate(plan.stage_devices)}
        device_of.update({"draft": plan.controller_device, "verify": plan.controller_device})
        accept_length = 1.0 if plan.method == "ar_pipeline" else n * (tokens + 1) / k
    else:
        n = None
        device_of = {"target": 0}
        accept_length = tokens / k
    busy, bubble = utilisation(time_ms, raw.rank_busy_ms, device_of)
    bubble = {r: v for r, v in bubble.items() if r.startswith("stage")} or bubble
    return SimResult(
        name=spec.name or _label(spec),
        method=spec.method, model=chosen, model_reason=reason, seed=int(seed), tokens=tokens, time_ms=time_ms,
        cycles=k, rejects=raw.rejects, refill_rejects=raw.refill_rejects, accept_length=accept_length,
        ar_token_ms=scenario.ar_token_ms(), stages=n, busy_fraction=busy, bubble_ms=bubble, records=recs,
        notes=tuple(notes),
    )


def _label(spec: MethodSpec) -> str:
    from ..methods import get_method

    return get_method(spec.method).label(spec)
