"""The fit recovers known parameters from traces the simulator itself generated (a test that can fail)."""
from __future__ import annotations

import pytest

from sim.calibration.extract import ModelShape, measure
from sim.calibration.fit import fit_profile
from sim.calibration.profile import Dist, LinearFit, Profile, StageModel
from sim.calibration.synthetic import synthetic_run

SMALL = ModelShape("tiny", 12, 256, 704, 4, 2, 64, 4096)
WIDE = ModelShape("wide", 12, 512, 1408, 8, 2, 64, 4096)


def true_profile(kappa: float = 0.15) -> Profile:
    # contention by concurrent work (StageModel): each further stage on the device slows a forward by kappa; rank 0
    # beside it by nothing here (every rank shares the one device, so rho could not be told from the layer time)
    return Profile(
        environment={"torch": "synthetic"},
        stage=StageModel(a0_ms=0.2, a1_ms_per_mparam=0.5, b_ms=0.3, kappa=kappa, spread=Dist(1.0, 0.0),
                         rank0_overlap_by_method={}),
        ar_extra=LinearFit({"const": 0.4}), ar_spread=Dist(1.0),
        draft={"replay": LinearFit({"const": 0.25})}, draft_spread=Dist(1.0),
        hops={"same_device": Dist(0.08)}, hop_ms_per_kb={},
        control=LinearFit({"const": 0.1, "stages": 0.02}), control_hop=Dist(0.05), send_ms=Dist(0.03),
        verify=LinearFit({"const": 0.35}), bookkeeping=Dist(0.04), flush=Dist(0.2), cost_spread=Dist(1.0))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    prof = true_profile()
    out = []
    for i, (shape, method, n) in enumerate([(SMALL, "spd", 2), (SMALL, "spd", 3), (SMALL, "ar_pipeline", 4),
                                            (WIDE, "spd", 2), (WIDE, "spd", 4), (SMALL, "ar", 1), (WIDE, "ar", 1)]):
        d = synthetic_run(root / f"r{i}", prof, shape, method, n=n, alpha=0.7, prompts=2, tokens=24, seed=i,
                          spread="constant")
        out.append(measure(d))
    return out


def test_fit_recovers_known_parameters(runs):
    truth = true_profile()
    fit = fit_profile(runs)
    for shape in (SMALL, WIDE):
        assert fit.stage.per_shape_layer_ms[shape.key] == pytest.approx(truth.stage.layer_ms(None, shape.layer_mparams), rel=0.03)
    assert fit.stage.a1_ms_per_mparam == pytest.approx(0.5, rel=0.05)
    assert fit.stage.b_ms == pytest.approx(0.3, abs=0.05)
    assert fit.stage.kappa == pytest.approx(0.15, rel=0.1)
    assert fit.hops["same_device"].mean_ms == pytest.approx(0.08, rel=0.02)
    assert fit.send_ms.mean_ms == pytest.approx(0.03, rel=0.05)
    assert fit.control_hop.mean_ms == pytest.approx(0.05, rel=0.05)
    assert fit.bookkeeping.mean_ms == pytest.approx(0.04, rel=0.05)
    assert fit.flush.mean_ms == pytest.approx(0.2, rel=0.1)
    # verify runs once the stages are done: no contention on it (rank 0's draft and control get it divided out)
    assert fit.verify(const=1.0, reports=3.0, head_mparams=1.0) == pytest.approx(0.35, rel=0.05)
    # per method, and in the cycles in which no token finished (the simulator charged them the same here)
    for m in ("spd", "ar_pipeline"):
        assert fit.by_method[m].verify(const=1.0, reports=3.0, head_mparams=1.0) == pytest.approx(0.35, rel=0.05)
    assert fit.verify_fill is not None and fit.verify_fill.mean_ms == pytest.approx(0.35, rel=0.05)
    assert fit.draft["replay"](const=1.0) == pytest.approx(0.25, rel=0.05)
    assert fit.control(const=1.0, stages=2.0) == pytest.approx(0.14, rel=0.05)
    ar_small = SMALL.layers * truth.stage.layer_ms(None, SMALL.layer_mparams) + 0.4
    fitted = SMALL.layers * fit.stage.layer_ms(SMALL.key, SMALL.layer_mparams) + fit.ar_extra(const=1.0, head_mparams=SMALL.head_mparams)
    assert fitted == pytest.approx(ar_small, rel=0.03)


def test_fit_detects_a_wrong_parameter(runs):
    """The same traces do not fit a different truth: guards against a fit that returns its initial guess."""
    fit = fit_profile(runs)
    assert abs(fit.stage.kappa - 0.0) > 0.05
    assert abs(fit.stage.b_ms - 1.0) > 0.3
