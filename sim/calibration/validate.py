"""Leave-one-configuration-out validation: predict each measured run from a profile fitted on the others.

For a run of configuration C, the profile is fitted on every run whose configuration differs from C
(all seeds / repeats of C are held out together), the run's own accept/reject sequence is replayed
prompt by prompt (so what is validated is the timing model, not the acceptance), and the simulator
predicts each prompt's decode time; the closed form (steady state at the run's accept fraction, finite
N) is reported beside it. Speedup = tokens/s over single-device AR tokens/s of the same model shape:
measured against a measured AR run in the set (same kernels; same trace level where there is one), predicted
against the held-out profile's AR step. Profiles are fitted on runs of the held-out run's executor variant
(kernels, process layout, draft execution: ``RunMeasurement.same_variant``) only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..closed_form import predict_scenario
from ..des import simulate
from ..errors import InputError
from ..scenario import Acceptance
from .extract import RunMeasurement
from .fit import fit_profile
from .profile import Profile
from .profile_to_scenario import calibrated_method


@dataclass
class RunPrediction:
    label: str
    config: str
    path: str
    method: str
    n: int
    measured_tokens_per_s: float
    predicted_tokens_per_s: float | None = None  # simulator, acceptance replayed
    closed_form_tokens_per_s: float | None = None
    measured_speedup: float | None = None
    predicted_speedup: float | None = None
    closed_form_speedup: float | None = None
    rel_error_tokens_per_s: float | None = None
    rel_error_speedup: float | None = None
    trained_on: int = 0  # runs in the profile that predicted it
    notes: list[str] = field(default_factory=list)

    @property
    def error(self) -> float | None:
        """The error the bound applies to: speedup where a measured AR baseline exists, else tokens/s."""
        return self.rel_error_speedup if self.rel_error_speedup is not None else self.rel_error_tokens_per_s

    def to_json(self) -> dict:
        return asdict(self)


def _rel(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not meas or not math.isfinite(pred) or not math.isfinite(meas):
        return None
    return (pred - meas) / meas


def predict_run(profile: Profile, run: RunMeasurement, seed: int = 0, spread: str = "lognormal") -> dict:
    """Predicted tokens/s (simulator and closed form) and the predicted AR tokens/s for one measured run."""
    extra = {"tokens": max(int(round(np.mean([p.tokens for p in run.prompts]))) + 1, 3)} if run.method == "spd" else None
    cal = calibrated_method(profile, run.shape, run.model_method, stages=run.n, draft_layers=run.draft_layers or 1,
                            split=run.split if run.method != "ar" else None, placement=run.rank_devices,
                            draft_source=run.draft_source, spread=spread, name=run.label, extra=extra,
                            untraced=run.trace_level != "full")
    scen, spec = cal.scenario, cal.scenario.methods[0]
    ar_tok_s = 1000.0 / scen.ar_token_ms()
    total_ms, total_tok = 0.0, 0
    for i, p in enumerate(run.prompts):
        if p.tokens < 1:
            continue
        s = scen
        if run.method == "spd":
            if len(p.accepts) < p.tokens:
                raise InputError(f"{run.path}: prompt {i}: {len(p.accepts)} recorded verifications for {p.tokens} decoded tokens")
            seq = tuple(p.accepts[:p.tokens])
            s = replace(scen, acceptance=Acceptance(sum(seq) / len(seq), "sequence", sequence=seq))
        res = simulate(s, spec, p.tokens, seed=seed + i, costs=cal.costs if run.method != "ar" else None)
        total_ms += res.time_ms
        total_tok += p.tokens
    sim_tok_s = 1000.0 * total_tok / total_ms if total_ms > 0 else None
    alpha = None
    if run.method == "spd":
        allacc = [a for p in run.prompts for a in p.accepts]
        alpha = sum(allacc) / len(allacc) if allacc else 1.0
    cf_scen = replace(scen, acceptance=Acceptance(alpha)) if alpha is not None else scen
    cf = predict_scenario(cf_scen)[0]
    return {"sim_tokens_per_s": sim_tok_s, "closed_form_tokens_per_s": cf.tokens_per_s, "ar_tokens_per_s": ar_tok_s,
            "notes": list(cal.notes)}


def measured_ar_tokens_per_s(runs: list[RunMeasurement], run: RunMeasurement) -> float | None:
    """Measured single-device AR tokens/s for the run's model shape on the same kind of device with the same
    kernels (the denominator of a speedup runs the same step kernels); at the run's trace level when the set
    has one."""
    same = [r for r in runs if r.method == "ar" and r.shape.key == run.shape.key and r.kernels == run.kernels
            and r.environment.get("device_names") == run.environment.get("device_names")]
    if not same:
        return None
    if any(r.trace_level == run.trace_level for r in same):
        same = [r for r in same if r.trace_level == run.trace_level]
    tok = sum(r.decode_tokens for r in same)
    ms = sum(r.decode_ms for r in same)
    return 1000.0 * tok / ms if ms > 0 else None


def _fit_set(runs: list[RunMeasurement], run: RunMeasurement) -> list[RunMeasurement]:
    """The runs of the other configurations of ``run``'s executor variant (cycle-level ones give the fit only
    the trace overhead, from their full-trace twins). An AR run has no controller
    placement or draft execution, but a profile describes one: it takes the pipeline runs of its kernels' most
    common variant (ties: the first in sorted order)."""
    others = [r for r in runs if r.config_key != run.config_key and r.same_variant(run)]
    pipe = [r.runtime for r in others if r.method != "ar"]
    if run.method == "ar" and pipe:
        common = max(sorted(set(pipe)), key=pipe.count)
        ref = next(r for r in others if r.runtime == common)
        others = [r for r in others if r.method == "ar" or r.same_variant(ref)]
    return others


def validate_runs(runs: list[RunMeasurement], profile: Profile | None = None, seed: int = 0,
                  spread: str = "lognormal") -> list[RunPrediction]:
    """``profile`` None: leave-one-configuration-out (a profile per held-out configuration)."""
    if not runs:
        raise InputError("validate: no runs given")
    fitted: dict[str, Profile | str] = {}
    out = []
    for run in runs:
        key = run.config_key
        if profile is not None:
            prof, trained = profile, len(profile.source.get("traces", []))
            if not run.fits_profile(profile.source.get("variants") or []):
                prof = (f"the profile was fitted on another executor variant ({run.runtime} is not among "
                        f"{sorted({v['kernels'] + '/' + v['processes'] for v in profile.source['variants']})})")
        else:
            others = _fit_set(runs, run)
            if key not in fitted:
                try:
                    fitted[key] = fit_profile(others) if any(r.method != "ar" for r in others) else \
                        "no pipeline run among the other configurations"
                except InputError as exc:
                    fitted[key] = str(exc)
            prof = fitted[key]
            trained = len(others)
        rp = RunPrediction(run.label, key, run.path, run.method, run.n, run.tokens_per_s, trained_on=trained)
        if isinstance(prof, str):
            rp.notes.append(f"not predicted: {prof}")
            out.append(rp)
            continue
        try:
            pr = predict_run(prof, run, seed, spread)
        except InputError as exc:
            rp.notes.append(f"not predicted: {exc}")
            out.append(rp)
            continue
        rp.predicted_tokens_per_s = pr["sim_tokens_per_s"]
        rp.closed_form_tokens_per_s = pr["closed_form_tokens_per_s"]
        rp.notes.extend(pr["notes"])
        rp.rel_error_tokens_per_s = _rel(rp.predicted_tokens_per_s, rp.measured_tokens_per_s)
        ar_meas = measured_ar_tokens_per_s(runs, run)
        if ar_meas and run.method != "ar":
            rp.measured_speedup = run.tokens_per_s / ar_meas
            rp.predicted_speedup = rp.predicted_tokens_per_s / pr["ar_tokens_per_s"] if rp.predicted_tokens_per_s else None
            rp.closed_form_speedup = (rp.closed_form_tokens_per_s / pr["ar_tokens_per_s"]
                                      if rp.closed_form_tokens_per_s else None)
            rp.rel_error_speedup = _rel(rp.predicted_speedup, rp.measured_speedup)
        out.append(rp)
    return out


def error_summary(preds: list[RunPrediction]) -> dict:
    errs = [abs(p.error) for p in preds if p.error is not None]
    return {"runs": len(preds), "predicted": len(errs),
            "median_abs_rel_error": float(np.median(errs)) if errs else None,
            "max_abs_rel_error": float(np.max(errs)) if errs else None}


def repeat_key(r: RunMeasurement) -> tuple:
    """Runs with the same key repeat one measurement: configuration, trace level and device models (the
    configuration names devices by position only, "host/dev0")."""
    return r.config_key, r.trace_level, tuple(r.environment.get("device_names") or ())


def repeat_spread(runs: list[RunMeasurement]) -> dict:
    """The noise floor of a set: configurations measured more than once at one trace level, and the spread of
    their tokens/s, (max - min) / mean. A single run cannot be predicted closer than its repeats agree."""
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault(repeat_key(r), []).append(r.tokens_per_s)
    spreads = [(max(v) - min(v)) / float(np.mean(v)) for v in groups.values() if len(v) > 1]
    return {"repeated_configurations": len(spreads),
            "median_spread": float(np.median(spreads)) if spreads else None,
            "max_spread": float(np.max(spreads)) if spreads else None}


def configuration_errors(runs: list[RunMeasurement], preds: list[RunPrediction], min_runs: int = 1) -> dict:
    """The error of each configuration's mean over its runs (same configuration, trace level and devices): the
    mean predicted speedup against the mean measured one where every run of it has both (tokens/s otherwise).
    What a user deciding on a configuration is after is its expected speed, which one run measures only to within
    the repeat spread. ``repeated``: configurations with more than one run (with none, this is the per-run
    summary again); ``rows``: one per configuration, in first-run order (``report.configuration_table`` prints them).
    ``min_runs``: the summary covers configurations measured at least that many times (``rows`` all of them)."""
    groups: dict[tuple, list[tuple[RunMeasurement, RunPrediction]]] = {}
    for r, p in zip(runs, preds):
        if p.error is not None:
            groups.setdefault(repeat_key(r), []).append((r, p))
    rows = []
    for members in groups.values():
        ps = [p for _, p in members]
        unit = "speedup" if all(p.rel_error_speedup is not None for p in ps) else "tokens/s"
        if unit == "speedup":
            pred, meas = [p.predicted_speedup for p in ps], [p.measured_speedup for p in ps]
        else:
            pred, meas = [p.predicted_tokens_per_s for p in ps], [p.measured_tokens_per_s for p in ps]
        tps = [r.tokens_per_s for r, _ in members]
        rows.append({"label": ps[0].label, "trace_level": members[0][0].trace_level, "runs": len(ps), "unit": unit,
                     "measured_mean": float(np.mean(meas)), "predicted_mean": float(np.mean(pred)),
                     "rel_error": _rel(float(np.mean(pred)), float(np.mean(meas))),
                     "spread": (max(tps) - min(tps)) / float(np.mean(tps)) if len(tps) > 1 else None})
    errs = [abs(row["rel_error"]) for row in rows if row["rel_error"] is not None and row["runs"] >= min_runs]
    return {"configurations": len(errs), "repeated": sum(row["runs"] > 1 for row in rows),
            "median_abs_rel_error": float(np.median(errs)) if errs else None,
            "max_abs_rel_error": float(np.max(errs)) if errs else None, "rows": rows}


def configuration_errors_line(conf: dict) -> str | None:
    """``configuration_errors`` as one sentence (None: no configuration was run more than once)."""
    if not conf["repeated"] or conf["median_abs_rel_error"] is None:
        return None
    return (f"each configuration's mean over its runs ({conf['configurations']} configurations, {conf['repeated']} "
            f"run more than once): |relative error| median {100 * conf['median_abs_rel_error']:.1f}%, max "
            f"{100 * conf['max_abs_rel_error']:.1f}%")


def repeat_spread_line(rep: dict) -> str | None:
    """``repeat_spread`` as one sentence (None: nothing repeated), for the CLI, the report and the dashboard."""
    if not rep["repeated_configurations"]:
        return None
    return (f"{rep['repeated_configurations']} configuration(s) measured more than once; their tokens/s "
            f"spread ((max - min) / mean) by up to {100 * rep['max_spread']:.1f}% (median "
            f"{100 * rep['median_spread']:.1f}%): a single run's error cannot be expected below that")


def self_check(runs: list[RunMeasurement]) -> dict:
    """``spd calibrate --self-check``: leave-one-configuration-out over the runs a profile is fitted on, the
    error summary (speedup, else tokens/s) of the pipeline runs by trace level ("full", "cycle")."""
    preds = validate_runs(runs)
    out = {}
    for level in ("full", "cycle"):
        out[level] = error_summary([p for p, r in zip(preds, runs) if r.trace_level == level and r.method != "ar"])
    return out


def self_check_line(check: dict) -> str:
    """One line: the profile's leave-one-configuration-out errors in predicted speedup, by trace level."""
    parts = []
    for level, what in (("cycle", "uninstrumented"), ("full", "full-trace")):
        s = check.get(level) or {}
        if s.get("predicted"):
            parts.append(f"{what} runs median {100 * s['median_abs_rel_error']:.1f}%, max "
                         f"{100 * s['max_abs_rel_error']:.1f}% ({s['predicted']} runs)")
    return ("its own runs, each predicted from the other configurations: " + "; ".join(parts)) if parts else \
        "no run could be predicted from the others"
