"""`--profile` for `spd predict` / `spd simulate`: the scenario supplies target, methods and acceptance
(including ``"acceptance": {"file": ...}`` from `spd eval-acceptance`), the profile supplies every timing."""
from __future__ import annotations

import sys
import warnings
from dataclasses import replace

from ..closed_form import predict_scenario
from ..scenario import Scenario
from .profile import Profile, ProfileMismatchWarning, load_profile, local_environment
from .profile_to_scenario import Calibrated, profile_to_scenarios
from .validate import self_check_line


def load_profile_here(profile_path: str) -> Profile:
    """The profile, checked against this machine's environment: a mismatch is one warning line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileMismatchWarning)
        prof = load_profile(profile_path, local_environment())
    for w in caught:
        sys.stderr.write(f"warning: {w.message}\n")
    return prof


def calibrated(scenario: Scenario, profile_path: str, spread: str = "lognormal") -> list[Calibrated]:
    """One calibrated single-method scenario per method of ``scenario``; environment mismatch -> one warning line."""
    prof = load_profile_here(profile_path)
    cals = profile_to_scenarios(prof, scenario, spread=spread)
    for note in sorted({n for c in cals for n in c.notes}):
        sys.stderr.write(f"note: {note}\n")
    if "self_check" in prof.source:  # how far the profile was off on its own runs (spd calibrate --self-check)
        sys.stderr.write(f"note: profile self-check: {self_check_line(prof.source['self_check'])}\n")
    return cals


def predict_with_profile(scenario: Scenario, profile_path: str) -> tuple[Scenario, list]:
    """Closed-form predictions of every method with the profile's timings (method order kept). Returns a
    scenario for the table header (the first method's timings) and the predictions."""
    cals = calibrated(scenario, profile_path, spread="constant")
    preds = [predict_scenario(c.scenario)[0] for c in cals]
    head = replace(cals[0].scenario, name=(scenario.name or "scenario") + " + profile " + profile_path)
    return head, preds
