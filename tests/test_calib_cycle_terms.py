"""The per-cycle terms session 8 added to the execution-time model (docs/calibration.md, "Session 8"), each
against a hand-computed cycle: which stages report to rank 0, the head that starts on the last stage's output
alone, per-stage start delays and reports, the trace overhead taken off a cycle as a whole, and the stage
model's contention by concurrent work."""
from __future__ import annotations

import pytest

from sim.calibration.extract import ModelShape
from sim.calibration.profile import DeviceShare, StageModel
from sim.calibration.profile_to_scenario import anchor_stages
from sim.des import CycleCosts, TimeSpec, simulate
from test_des_helpers import scenario

ALL_ACCEPT = {"sequence": [1]}
TOKENS = 200


def _spd(n: int, stages: list[float], **costs) -> tuple:
    spec = {"method": "spd", "stages": n, "draft_layers": 1, "stage_forward_ms": stages}
    sc = scenario([spec], acceptance=ALL_ACCEPT, layers=4 * n, hop=0.1, draft_layer=0.5, verify=0.2,
                  cycle_overhead=0.3)
    base = {"control": TimeSpec.const(0.3), "verify": TimeSpec.const(0.6)}
    return sc, CycleCosts(**{**base, **costs})


def _steady(sc, costs, model: str = "auto") -> float:
    """The cycle length once the pipeline is full (every draft accepted: all cycles after the fill alike)."""
    r = simulate(sc, sc.methods[0], TOKENS, seed=0, costs=costs, model=model)
    return float(r.records.duration_ms[-1])


@pytest.mark.parametrize("model", ["auto", "dataflow"])
def test_head_starts_on_the_last_stage_and_quiet_stages_are_not_waited_for(model):
    """n=3, stage 1 slow (3 ms), stages 2-3 at 2 ms, hop 0.1, draft 0.5, control 0.3, verify 0.6 of which the head
    is 0.4. Every stage reporting: 0.3 + max(stage 1 3.1, last 2.1 + head 0.4) + 0.2 = 3.6 ms. Stage 1 silent
    (no anchor): the head and the rest follow the last stage alone: 0.3 + 2.1 + 0.6 = 3.0 ms. Without a head
    all of verify waits for stage 1: 0.3 + 3.1 + 0.6 = 4.0 ms."""
    sc, head = _spd(3, [3.0, 2.0, 2.0], head=TimeSpec.const(0.4))
    assert _steady(sc, head, model) == pytest.approx(3.6)
    _, quiet = _spd(3, [3.0, 2.0, 2.0], head=TimeSpec.const(0.4), report_stages=(2, 3))
    assert _steady(sc, quiet, model) == pytest.approx(3.0)
    _, plain = _spd(3, [3.0, 2.0, 2.0])
    assert _steady(sc, plain, model) == pytest.approx(4.0)
    r = simulate(sc, sc.methods[0], TOKENS, costs=quiet)
    assert r.model == "dataflow" and "sends rank 0 nothing" in r.model_reason


@pytest.mark.parametrize("model", ["fast", "dataflow"])
def test_stage_start_and_report_per_stage(model):
    """n=2 at 2 ms a stage: stage 2 waits 0.4 ms after its GO, and its output reaches rank 0 0.3 ms after its
    forward (the link says 0.1): 0.3 + (0.4 + 2 + 0.3) + 0.6 = 3.6 ms; stage 1's path 2.1 is shorter."""
    sc, costs = _spd(2, [2.0, 2.0], stage_start=(TimeSpec(), TimeSpec.const(0.4)),
                     report_hop=(None, TimeSpec.const(0.3)))
    assert _steady(sc, costs, model) == pytest.approx(3.6)


@pytest.mark.parametrize("model", ["fast", "dataflow"])
def test_trace_overhead_credit_comes_off_each_cycle_of_its_event(model):
    """A fill cycle with one stage: 0.3 + max(0.5, 2.1) + verify_fill 0.2 = 2.6 ms, less a 0.5 ms credit: 2.1 ms
    (more than its verify_fill: the credit is a cycle total). Steady cycles: 3.0 - 0.25."""
    sc, costs = _spd(2, [2.0, 2.0], verify_fill=TimeSpec.const(0.2), credit={"fill": 0.5, "accept": 0.25})
    r = simulate(sc, sc.methods[0], TOKENS, seed=0, costs=costs, model=model)
    assert r.records.duration_ms[0] == pytest.approx(2.1)
    assert r.records.duration_ms[-1] == pytest.approx(0.3 + 2.1 + 0.6 - 0.25)


def test_a_credit_larger_than_the_serial_tail_is_capped_alike_in_both_models():
    """A fill credit of 0.8 ms against verify_fill 0.2 + the next control 0.3: the cycle cannot end before what it
    has waited for, so at most 0.5 ms comes off; the fast recurrence and the dataflow model agree."""
    sc, costs = _spd(2, [2.0, 2.0], verify_fill=TimeSpec.const(0.2), credit={"fill": 0.8, "accept": 0.25})
    fast, flow = (simulate(sc, sc.methods[0], TOKENS, seed=0, costs=costs, model=m) for m in ("fast", "dataflow"))
    assert fast.time_ms == pytest.approx(flow.time_ms)
    assert fast.records.duration_ms[0] == flow.records.duration_ms[0] == pytest.approx(2.6 - 0.5)


def test_contention_follows_concurrent_work():
    """t = T (1 + (kappa + kappa_bw B)(stages on the device - 1)) + rho min(W, T) beside rank 0; the legacy model
    (rank0_overlap_by_method None) multiplies by 1 + kappa (ranks - 1) whatever they do."""
    shape = ModelShape("m", 8, 1024, 3072, 16, 8, 64, 1000)
    st = StageModel(a0_ms=0.0, a1_ms_per_mparam=0.0, b_ms=0.1, per_shape_layer_ms={shape.key: 0.2},
                    kappa_by_method={"spd": 0.3}, kappa_bw_by_method={"spd": 0.1},
                    rank0_overlap_by_method={"spd": 0.2, "ar_pipeline": 0.0})
    t = 4 * 0.2 + 0.1
    tbps = st.stream_tbps(shape.key, shape.layer_mparams)
    assert tbps == pytest.approx(2 * shape.layer_mparams / 0.2 / 1000)
    assert st.forward_ms(4, shape.key, shape.layer_mparams, DeviceShare(1, False), "spd") == pytest.approx(t)
    two = st.forward_ms(4, shape.key, shape.layer_mparams, DeviceShare(2, False), "spd")
    assert two == pytest.approx(t * (1 + 0.3 + 0.1 * tbps))
    # beside rank 0's draft of 0.5 ms (shorter than the forward): 0.2 x 0.5 more; its whole wait for the AR pipeline
    assert st.forward_ms(4, shape.key, shape.layer_mparams, DeviceShare(1, True), "spd", 0.5) == pytest.approx(t + 0.1)
    assert st.forward_ms(4, shape.key, shape.layer_mparams, DeviceShare(1, True), "ar_pipeline") == pytest.approx(t)
    assert st.rank0_factor(DeviceShare(1, True), "spd", tbps) == 1.0
    legacy = StageModel(a0_ms=0.0, a1_ms_per_mparam=0.0, b_ms=0.1, kappa=0.5, per_shape_layer_ms={shape.key: 0.2})
    assert legacy.forward_ms(4, shape.key, shape.layer_mparams, DeviceShare(1, True)) == pytest.approx(t * 1.5)


def test_anchor_stages_follow_the_default_anchors():
    """SPEC.md 1.2's anchors {0, L/n, 3L/n, 6L/n, L-1}: at n=4 stages 1, 3 and 4 send rank 0 their output, at
    n=3 stages 1 and 3 (the traces agree: docs/calibration.md)."""
    assert anchor_stages(36, (9, 9, 9, 9)) == (1, 3, 4)
    assert anchor_stages(36, (12, 12, 12)) == (1, 3)
    assert anchor_stages(36, (18, 18)) == (1, 2)
    assert anchor_stages(30, (8, 8, 7, 7)) == (1, 3, 4)  # the trained SmolLM2 n=4 drafter: anchors 0, 8, 23, 29, 30
