"""Closed-form speedup formulas of SPEC.md sections 1-2, numpy-vectorised.

Every function here accepts Python scalars or numpy arrays (broadcast together) and returns the
same shape, so one code path serves a single prediction (``spd predict``), a whole grid
(``spd sweep``, the dashboard) and the benchmark. Costs in *layer units* count one target decoder
layer forward for one token as 1; that is the accounting of the published "theoretical" speedups.

Public API for other parts of the project:

* formulas: :func:`spd_accept_length`, :func:`spd_alpha_from_accept_length`, :func:`spd_cycles`,
  :func:`spd_expected_cycles`, :func:`spd_accept_length_finite`, :func:`pipeline_factor`,
  :func:`chain_expected_tokens`, :func:`leviathan_expected_tokens`, :func:`sd_theoretical_speedup`,
  :func:`eagle3_theoretical_speedup`, :func:`ppsd_theoretical_speedup`, :func:`alpha_from_chain_tokens`;
* wall-clock kernels: :func:`spd_wallclock` & co. (one per method, shared by predict and sweep);
* scenario level: :func:`predict_scenario` (list of ``MethodPrediction``) and :func:`predict_grid`
  (dict of arrays for one method over a grid of alpha / stages / hop / draft layers ...).

Acceptance ``alpha`` is always the per-draft *conditional* probability (Leviathan's alpha).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the methods import this module; import them lazily to avoid a cycle
    from .methods.base import MethodPrediction
    from .scenario import MethodSpec, Scenario

ArrayLike = Any  # float | int | np.ndarray


# ------------------------------------------------------------------------------------- SPD / PPSD
def spd_tokens_per_cycle(alpha: ArrayLike, n: ArrayLike, tokens: ArrayLike | None = None) -> np.ndarray:
    """Committed tokens per pipeline cycle: steady state r = 1 / (1 + (n-1)(1-alpha)), or N/E[K]
    for a generation of ``tokens`` = N committed tokens (fill and refill cycles counted).

    From SPEC.md 1.1: with the pipeline full, an accepted draft commits one token per cycle; a
    reject commits the correction and then n-1 refill cycles commit nothing. Drafts are accepted
    independently with probability alpha (for a Markov or recorded sequence, alpha is the
    stationary accept fraction: the cycle count only depends on how many rejects occur).
    """
    if tokens is not None:
        return np.asarray(tokens, dtype=float) / spd_expected_cycles(tokens, n, alpha)
    a = np.asarray(alpha, dtype=float)
    return 1.0 / (1.0 + (np.asarray(n, dtype=float) - 1.0) * (1.0 - a))


def spd_accept_length(alpha: ArrayLike, n: ArrayLike) -> np.ndarray:
    """SPD's equivalent accept length L_acc = n·r = n / (1 + (n-1)(1-alpha)) (steady state, SPEC.md 1.1).

    Equals 1 at alpha = 0 and n at alpha = 1. It ignores the n-1 fill cycles of a finite
    generation (see :func:`spd_accept_length_finite`).
    """
    return np.asarray(n, dtype=float) * spd_tokens_per_cycle(alpha, n)


def spd_alpha_from_accept_length(l_acc: ArrayLike, n: ArrayLike) -> np.ndarray:
    """Inverse of :func:`spd_accept_length`: alpha = 1 - (n/L_acc - 1)/(n-1). Needs n >= 2."""
    n = np.asarray(n, dtype=float)
    return 1.0 - (n / np.asarray(l_acc, dtype=float) - 1.0) / (n - 1.0)


def spd_cycles(tokens: ArrayLike, n: ArrayLike, refills: ArrayLike) -> np.ndarray:
    """Exact cycle count of one generation, K = N + n - 2 + (n-1)·R (SPEC.md 1.1).

    N = committed tokens including the token sampled at prefill (N >= 2), R = rejects *followed
    by a refill* (a generation whose last committed token is a correction stops there). The first
    verification happens after n cycles (n-1 of them are fill), then every cycle verifies one
    token, and each refilling reject adds n-1 cycles that commit nothing.
    """
    n = np.asarray(n)
    return np.asarray(tokens) + n - 2 + (n - 1) * np.asarray(refills)


def spd_expected_cycles(tokens: ArrayLike, n: ArrayLike, alpha: ArrayLike) -> np.ndarray:
    """E[K] for N committed tokens with i.i.d. acceptance: only the first N-2 of the N-1 verifications
    can be refilling rejects (the last one ends the generation), so E[R] = (N-2)(1-alpha)."""
    tokens = np.asarray(tokens, dtype=float)
    refills = np.maximum(tokens - 2.0, 0.0) * (1.0 - np.asarray(alpha, dtype=float))
    return spd_cycles(tokens, np.asarray(n, dtype=float), refills)


def spd_accept_length_finite(alpha: ArrayLike, n: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """Finite-length L_acc = n·N / E[K] (what the published "theoretical" SPD column measures, per prompt).

    The published figure is a mean over prompts of n·N_i/K_i; using E[K] in the denominator is the
    ratio of expectations, which differs from it by well under 0.1% at N = 512.
    """
    return np.asarray(n, dtype=float) * spd_tokens_per_cycle(alpha, n, tokens)


def spd_alpha_from_accept_length_finite(l_acc: ArrayLike, n: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """Inverse of :func:`spd_accept_length_finite` (N >= 3): solve n·N/L = N+n-2+(n-1)(N-2)(1-alpha)."""
    n = np.asarray(n, dtype=float)
    tokens = np.asarray(tokens, dtype=float)
    excess = n * tokens / np.asarray(l_acc, dtype=float) - (tokens + n - 2.0)
    return 1.0 - excess / ((n - 1.0) * (tokens - 2.0))


def pipeline_factor(layers: ArrayLike, largest_stage_layers: ArrayLike) -> np.ndarray:
    """L / (layers of the largest stage): the most tokens per single-device-AR-token-time a split
    can deliver (SPEC.md 1.1, uneven splits). Equals n when n divides L."""
    return np.asarray(layers, dtype=float) / np.asarray(largest_stage_layers, dtype=float)


def balanced_largest_stage(layers: ArrayLike, n: ArrayLike) -> np.ndarray:
    """Layers of the largest stage of a balanced split (floor/ceil of L/n): ceil(L/n)."""
    return -(-np.asarray(layers) // np.asarray(n))


def spd_theoretical_speedup(alpha: ArrayLike, n: ArrayLike, layers: ArrayLike, largest_stage_layers: ArrayLike,
                            draft_layers: ArrayLike, tokens: ArrayLike | None = None) -> np.ndarray:
    """SPD speedup in layer units: r · L / max(largest stage, L_s) (SPEC.md 2, "SPD general").

    With the PDM hidden (L_s <= largest stage) and an even split this is exactly L_acc, the
    published column. A draft layer is counted as one target layer (same width). ``tokens`` = N
    switches r to the finite-length N/E[K].
    """
    return _hidden_draft_speedup(spd_tokens_per_cycle(alpha, n, tokens), layers, largest_stage_layers, draft_layers)


def _hidden_draft_speedup(r: ArrayLike, layers: ArrayLike, largest_stage_layers: ArrayLike,
                          draft_layers: ArrayLike) -> np.ndarray:
    """r tokens per cycle, a cycle as long as the largest stage or the draft (it runs beside the stages), in
    layer units: r · L / max(largest stage, L_s)."""
    cycle_layers = np.maximum(np.asarray(largest_stage_layers, dtype=float), np.asarray(draft_layers, dtype=float))
    return np.asarray(r, dtype=float) * np.asarray(layers, dtype=float) / cycle_layers


def ppsd_theoretical_speedup(alpha: ArrayLike, n: ArrayLike, layers: ArrayLike, largest_stage_layers: ArrayLike,
                             draft_layers: ArrayLike, tokens: ArrayLike | None = None) -> np.ndarray:
    """PPSD in layer units: r · L / (largest stage + L_s) = L_acc·L/(L_s·n + L) for an even split (SPEC.md 2).

    PPSD runs its L_s-layer draft *after* each pipeline step, serially, so the draft is never hidden.
    """
    r = spd_tokens_per_cycle(alpha, n, tokens)
    return r * np.asarray(layers, dtype=float) / (np.asarray(largest_stage_layers, dtype=float) + np.asarray(draft_layers, dtype=float))


# ------------------------------------------------------------------------------ chain drafting (SD, EAGLE)
def leviathan_expected_tokens(alpha: ArrayLike, gamma: ArrayLike) -> np.ndarray:
    """Expected tokens per draft-and-verify round, (1 - alpha^(gamma+1)) / (1 - alpha) (Leviathan et al. 2023,
    eq. 1): gamma drafts accepted i.i.d. with probability alpha, plus the target's bonus/correction token.
    The alpha -> 1 limit is gamma + 1."""
    a = np.asarray(alpha, dtype=float)
    g = np.asarray(gamma, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (1.0 - a ** (g + 1.0)) / (1.0 - a)
    return np.where(a >= 1.0, g + 1.0, out)


def chain_expected_tokens(per_position: ArrayLike) -> np.ndarray:
    """tau = 1 + sum_k prod_{j<=k} a_j for a chain of conditional per-position acceptances a_1..a_m
    (last axis). Draft k is accepted only if drafts 1..k-1 were; the +1 is the bonus token. With
    all a_j = alpha it equals :func:`leviathan_expected_tokens`."""
    a = np.asarray(per_position, dtype=float)
    return 1.0 + np.cumprod(a, axis=-1).sum(axis=-1)


def alpha_from_chain_tokens(tau: ArrayLike, steps: ArrayLike, iterations: int = 64) -> np.ndarray:
    """Constant alpha whose chain of ``steps`` drafts gives ``tau`` tokens per round (inverse of
    :func:`leviathan_expected_tokens`; vectorised bisection, tau is increasing in alpha)."""
    tau = np.asarray(tau, dtype=float)
    steps = np.asarray(steps, dtype=float)
    lo = np.zeros(np.broadcast(tau, steps).shape)
    hi = np.ones_like(lo)
    for _ in range(iterations):  # 2^-64: exact to double precision
        mid = 0.5 * (lo + hi)
        below = leviathan_expected_tokens(mid, steps) < tau
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = 0.5 * (lo + hi)
    out = np.where(tau <= 1.0, 0.0, out)
    return np.where(tau >= steps + 1.0, 1.0, out)


def sd_theoretical_speedup(expected_tokens: ArrayLike, gamma: ArrayLike, cost_ratio: ArrayLike) -> np.ndarray:
    """Vanilla SD (Leviathan et al. 2023, eq. for walltime improvement): tokens per round / (gamma·c + 1),
    c = draft/target cost ratio; the verify forward of gamma+1 tokens costs one target step."""
    return np.asarray(expected_tokens, dtype=float) / (np.asarray(gamma, dtype=float) * np.asarray(cost_ratio, dtype=float) + 1.0)


def eagle3_theoretical_speedup(tau: ArrayLike, steps: ArrayLike, draft_layers: ArrayLike, layers: ArrayLike) -> np.ndarray:
    """EAGLE-3 chain drafting in layer units: tau·L / (L_s·m + L) (SPEC.md 2): m serial draft steps of
    L_s layers each, then one target forward of L layers that verifies the whole chain."""
    lay = np.asarray(layers, dtype=float)
    return np.asarray(tau, dtype=float) * lay / (np.asarray(draft_layers, dtype=float) * np.asarray(steps, dtype=float) + lay)


# ------------------------------------------------------------------------------- wall-clock kernels
@dataclass(frozen=True)
class WallClock:
    """Wall-clock result arrays: one cycle/round in ms and committed tokens per cycle."""

    cycle_ms: np.ndarray
    tokens_per_cycle: np.ndarray
    ar_token_ms: ArrayLike

    @property
    def tokens_per_s(self) -> np.ndarray:
        return 1000.0 * self.tokens_per_cycle / self.cycle_ms

    @property
    def wallclock_speedup(self) -> np.ndarray:
        """tokens/s over single-device AR tokens/s = tokens_per_cycle · ar_token / cycle."""
        return self.tokens_per_cycle * np.asarray(self.ar_token_ms, dtype=float) / self.cycle_ms


def spd_cycle_ms(max_stage_ms: ArrayLike, hop_ms: ArrayLike, draft_ms: ArrayLike, verify_ms: ArrayLike,
                 cycle_overhead_ms: ArrayLike) -> np.ndarray:
    """SPD cycle: cycle_overhead + max(PDM, slowest stage + hop) + verify (SPEC.md 1.3 critical path).
    The PDM runs concurrently with the stage forwards; only the longer of the two is on the path."""
    return (np.asarray(cycle_overhead_ms, dtype=float) + np.maximum(np.asarray(draft_ms, dtype=float),
            np.asarray(max_stage_ms, dtype=float) + np.asarray(hop_ms, dtype=float)) + np.asarray(verify_ms, dtype=float))


def spd_speculative_tokens_per_cycle(alpha: ArrayLike, n: ArrayLike, tokens: ArrayLike | None = None) -> np.ndarray:
    """SPD with speculative control (``spd run --speculative-control``): rank 0 sends the next GO before it
    verifies, so after a reject the stages have run one cycle on tokens that no longer follow (wasted), then
    the n-1 refill cycles: a reject costs n cycles. Steady state r = 1 / (1 + n(1-alpha)); for N tokens
    N / E[K_wall], K_wall = N + n - 2 + n·R decode cycles (the generation's trailing wasted cycle comes after
    the last commit and is not decode time)."""
    n = np.asarray(n, dtype=float)
    a = np.asarray(alpha, dtype=float)
    if tokens is not None:
        tokens = np.asarray(tokens, dtype=float)
        refills = np.maximum(tokens - 2.0, 0.0) * (1.0 - a)
        return tokens / (tokens + n - 2.0 + n * refills)
    return 1.0 / (1.0 + n * (1.0 - a))


def spd_speculative_cycle_ms(max_stage_ms: ArrayLike, hop_ms: ArrayLike, draft_ms: ArrayLike, verify_ms: ArrayLike,
                             cycle_overhead_ms: ArrayLike, n: ArrayLike) -> np.ndarray:
    """SPD cycle with speculative control: max(slowest stage, (slowest stage + n·hop + cycle_overhead + draft +
    verify) / 2, cycle_overhead + draft + verify).

    The stages no longer wait for rank 0. Each starts a cycle when its GO is in and its previous forward
    has ended; the stages stagger by one hop each, so hops do not lengthen the period. Rank 0 sends the GO
    of cycle c+2 after the last stage's report of cycle c (the first stage's start of c + (n-1) hops + the
    forward + the report's hop), the verify, the bookkeeping, the draft of c+1 and the control work. That
    GO must be in before the first stage ends c+1, two cycles after it started c, which gives the second
    term. The third is rank 0's own work per cycle."""
    stage = np.asarray(max_stage_ms, dtype=float)
    rank0 = (np.asarray(cycle_overhead_ms, dtype=float) + np.asarray(draft_ms, dtype=float)
             + np.asarray(verify_ms, dtype=float))
    loop = (stage + np.asarray(n, dtype=float) * np.asarray(hop_ms, dtype=float) + rank0) / 2.0
    return np.maximum(np.maximum(stage, loop), rank0)


def spd_speculative_theoretical_speedup(alpha: ArrayLike, n: ArrayLike, layers: ArrayLike,
                                        largest_stage_layers: ArrayLike, draft_layers: ArrayLike,
                                        tokens: ArrayLike | None = None) -> np.ndarray:
    """SPD with speculative control in layer units: r_spec · L / max(largest stage, L_s), r_spec counting a
    reject as n cycles (:func:`spd_speculative_tokens_per_cycle`); equals SPD's at alpha = 1."""
    return _hidden_draft_speedup(spd_speculative_tokens_per_cycle(alpha, n, tokens), layers, largest_stage_layers,
                                 draft_layers)


def ppsd_cycle_ms(max_stage_ms: ArrayLike, hop_ms: ArrayLike, draft_ms: ArrayLike, verify_ms: ArrayLike,
                  cycle_overhead_ms: ArrayLike) -> np.ndarray:
    """PPSD cycle: cycle_overhead + slowest stage + hop + draft + verify (draft runs after each step, serially)."""
    return (np.asarray(cycle_overhead_ms, dtype=float) + np.asarray(max_stage_ms, dtype=float) + np.asarray(hop_ms, dtype=float)
            + np.asarray(draft_ms, dtype=float) + np.asarray(verify_ms, dtype=float))


def ar_pipeline_token_ms(sum_stage_ms: ArrayLike, n: ArrayLike, hop_ms: ArrayLike, verify_ms: ArrayLike,
                         cycle_overhead_ms: ArrayLike) -> np.ndarray:
    """AR through n stages, no speculation: one token walks every stage in turn and crosses n hops
    (n-1 between stages plus the return to the controller), then verify/sampling."""
    return (np.asarray(cycle_overhead_ms, dtype=float) + np.asarray(sum_stage_ms, dtype=float)
            + np.asarray(n, dtype=float) * np.asarray(hop_ms, dtype=float) + np.asarray(verify_ms, dtype=float))


def eagle3_round_ms(steps: ArrayLike, draft_layers: ArrayLike, draft_layer_ms: ArrayLike, ar_token_ms: ArrayLike,
                    verify_ms: ArrayLike, cycle_overhead_ms: ArrayLike) -> np.ndarray:
    """EAGLE-3 round: cycle_overhead + m·L_s·draft_layer + ar_token + verify. Verifying m+1 tokens at
    batch 1 is memory-bound, so it costs about one AR step."""
    return (np.asarray(cycle_overhead_ms, dtype=float) + np.asarray(steps, dtype=float) * np.asarray(draft_layers, dtype=float)
            * np.asarray(draft_layer_ms, dtype=float) + np.asarray(ar_token_ms, dtype=float) + np.asarray(verify_ms, dtype=float))


def sd_round_ms(gamma: ArrayLike, cost_ratio: ArrayLike, ar_token_ms: ArrayLike, verify_ms: ArrayLike,
                cycle_overhead_ms: ArrayLike) -> np.ndarray:
    """Vanilla SD round: cycle_overhead + ar_token·(1 + gamma·c) + verify (gamma draft steps at c times a target step)."""
    return (np.asarray(cycle_overhead_ms, dtype=float) + np.asarray(ar_token_ms, dtype=float)
            * (1.0 + np.asarray(gamma, dtype=float) * np.asarray(cost_ratio, dtype=float)) + np.asarray(verify_ms, dtype=float))


# ------------------------------------------------------------------------------------ scenario level
def predict_scenario(scenario: "Scenario") -> "list[MethodPrediction]":
    """Closed-form prediction of every method of a scenario, in file order."""
    from .methods import get_method

    return [get_method(spec.method, scenario.source, spec.field_prefix).predict(spec, scenario) for spec in scenario.methods]


def predict_grid(scenario: "Scenario", spec: "MethodSpec", **axes: ArrayLike) -> dict[str, np.ndarray]:
    """Vectorised prediction of one method over a grid (no Python loop per point).

    ``axes`` may hold ``alpha``, ``stages``, ``hop_ms``, ``draft_layers``, ``steps``, ``gamma`` as
    arrays that broadcast together (e.g. built with ``np.meshgrid`` or ``np.ix_``); an axis left out
    takes the scenario's value. An axis the method does not use is ignored. Returns a dict of
    arrays broadcast to the grid shape: ``theoretical_speedup``, ``accept_length``,
    ``tokens_per_cycle``, and with timings ``cycle_ms``, ``tokens_per_s``, ``wallclock_speedup`` plus
    method extras (SPD: ``draft_hidden``, ``draft_slack_ms``).
    """
    from .methods import get_method
    from .methods.base import Grid

    grid = Grid(**{k: None if v is None else np.asarray(v) for k, v in axes.items()})
    out = get_method(spec.method, scenario.source, spec.field_prefix).predict_grid(spec, scenario, grid)
    # Per-point arrays only: drop the per-scenario extras (None, the stage split as a list, ...).
    out = {k: np.asarray(v) for k, v in out.items() if v is not None and not isinstance(v, (list, tuple))}
    shape = np.broadcast_shapes(*(np.shape(v) for v in out.values()))
    return {k: np.broadcast_to(v, shape) for k, v in out.items()}
