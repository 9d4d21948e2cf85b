"""The SimPy discrete-event simulator of SPD and its baselines (see docs/simulator.md).

Layout: ``plan.py`` reads a scenario into typed plans (stage times, placement, links, fixed costs);
``latency.py`` is the execution-time model (seeded per-stream draws); ``acceptance.py`` the
acceptance processes; ``dataflow.py`` / ``single.py`` the SimPy models; ``fast.py`` the exact
recurrence; ``methods.py`` the per-method registry; ``engine.py`` the entry point; ``trace.py`` the
Chrome-trace export; ``result.py`` the result dataclasses.
"""
from .engine import MODELS, simulate
from .latency import StreamSet, Term, TimeSpec
from .plan import CycleCosts, PipelinePlan, SinglePlan, pipeline_plan, single_plan
from .result import ACCEPT, NO_VERIFY, REJECT, CycleRecords, SimResult
from .trace import TraceRecorder, read_trace, write_trace

__all__ = [
    "MODELS", "simulate", "StreamSet", "Term", "TimeSpec", "CycleCosts", "PipelinePlan", "SinglePlan",
    "pipeline_plan", "single_plan", "ACCEPT", "NO_VERIFY", "REJECT", "CycleRecords", "SimResult",
    "TraceRecorder", "read_trace", "write_trace",
]
