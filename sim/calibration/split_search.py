"""Which stage split (decoder layers per stage) a calibrated profile predicts to be fastest.

An even split is not the best one when the stages are not alike: stage 1 shares its GPU with the controller
(the draft forward runs beside it: the profile's contention factor), the last stage reports to rank 0, and
every non-last stage pays its send. The search is steepest ascent over one-layer moves between two stages,
from the balanced split, each candidate scored by the simulator (constant spread, one seed: the comparison is
deterministic) on the scenario's acceptance. It finds a local optimum; with the few asymmetric terms of a
profile that is in practice the optimum (checked against exhaustive search at n=3 in the tests).

``spd split`` (sim/commands/split.py) prints the result per pipeline method, with the ``--stage-split`` value
for ``spd run``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..des import simulate
from ..errors import InputError
from ..scenario import MethodSpec, Scenario, balanced_split
from .profile import Profile
from .profile_to_scenario import PIPELINE_METHODS, calibrate_spec, resolve_shape

Split = tuple[int, ...]


@dataclass(frozen=True)
class SplitChoice:
    """The balanced split and the best one found, with predicted decode tokens/s (simulator)."""

    name: str
    method: str
    stages: int
    balanced: Split
    balanced_tokens_per_s: float
    best: Split
    best_tokens_per_s: float
    evaluated: int  # splits simulated

    @property
    def stage_split_arg(self) -> str:
        """The best split as ``spd run --stage-split`` takes it."""
        return ",".join(map(str, self.best))

    @property
    def gain(self) -> float:
        """Relative throughput gain of the best split over the balanced one."""
        return self.best_tokens_per_s / self.balanced_tokens_per_s - 1.0

    def to_json(self) -> dict:
        return {"name": self.name, "method": self.method, "stages": self.stages, "balanced": list(self.balanced),
                "balanced_tokens_per_s": self.balanced_tokens_per_s, "best": list(self.best),
                "best_tokens_per_s": self.best_tokens_per_s, "gain": self.gain, "evaluated": self.evaluated,
                "stage_split_arg": self.stage_split_arg}


def climb(score: Callable[[Split], float], start: Split) -> tuple[Split, float, dict[Split, float]]:
    """Steepest ascent over moves of one layer from one stage to another (every stage keeps >= 1 layer).
    Returns the local optimum, its score and the score of every split scored (``start`` included)."""
    seen: dict[Split, float] = {}

    def s(split: Split) -> float:
        if split not in seen:
            seen[split] = score(split)
        return seen[split]

    best, best_score = start, s(start)
    while True:
        moves = [tuple(k - (i == a) + (i == b) for i, k in enumerate(best))
                 for a in range(len(best)) for b in range(len(best)) if a != b and best[a] > 1]
        cand = max(moves, key=s, default=None)
        if cand is None or s(cand) <= best_score * (1 + 1e-9):
            return best, best_score, seen
        best, best_score = cand, s(cand)


def best_splits(profile: Profile, scenario: Scenario, tokens: int = 2000, seed: int = 0) -> list[SplitChoice]:
    """The best split of every pipeline method (stages >= 2) of ``scenario`` under ``profile``."""
    shape, _ = resolve_shape(profile, scenario.target.layers, scenario.target.name, scenario.target.hidden_size)
    out = []
    for spec in scenario.methods:
        if spec.method not in PIPELINE_METHODS or (spec.stages or 1) < 2:
            continue
        score = _scorer(profile, shape, spec, scenario, tokens, seed)
        start = balanced_split(scenario.target.layers, spec.stages)
        best, rate, scored = climb(score, start)
        out.append(SplitChoice(spec.name or spec.method, spec.method, spec.stages, start, scored[start], best, rate,
                               len(scored)))
    if not out:
        raise InputError(f"split: the scenario has no pipeline method with stages >= 2 ({', '.join(PIPELINE_METHODS)})")
    return out


def _scorer(profile: Profile, shape, spec: MethodSpec, scenario: Scenario, tokens: int,
            seed: int) -> Callable[[Split], float]:
    def score(split: Split) -> float:
        cal = calibrate_spec(profile, shape, spec, scenario, spread="constant", split=split)
        res = simulate(cal.scenario, cal.scenario.methods[0], tokens, seed=seed, costs=cal.costs)
        return 1000.0 * tokens / res.time_ms

    return score
