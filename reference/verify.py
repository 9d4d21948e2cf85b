"""Verification of one draft token against the target (SPEC.md 1.1).

- Greedy (temperature 0): accept iff the draft equals the target's argmax; on reject the argmax is the
  correction.
- Sampling (temperature T > 0): speculative rejection sampling (Leviathan et al. 2023). The draft x was
  sampled from q; accept with probability min(1, p(x)/q(x)), else sample the correction from
  normalize(max(0, p - q)). The committed token is then distributed exactly as p. A reduced draft vocabulary
  is a q that is zero outside it (handled by :func:`draft_distribution`).

All sampling arithmetic runs on the CPU in float64 with a seeded ``torch.Generator``: the same logits and
seed give the same tokens on any device (a GPU generator would not match a CPU one), and the probabilities
are not rounded twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sim.errors import InputError


@dataclass(frozen=True)
class SamplingConfig:
    """``temperature`` 0 = greedy. ``seed`` seeds every random choice of one generation (first token,
    draft sampling, accept coins, residual samples)."""

    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0.0):
            raise InputError(f"temperature: must be a number >= 0, got {self.temperature!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class VerifyResult:
    accepted: bool
    token: int  # the committed token: the draft when accepted, else the correction


def target_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) as float64 on the CPU (``temperature`` > 0)."""
    return torch.softmax(logits.detach().reshape(-1).to("cpu", torch.float64) / temperature, dim=-1)


def draft_distribution(draft_logits: torch.Tensor, vocab_ids: torch.Tensor | None, vocab_size: int,
                       temperature: float) -> torch.Tensor | None:
    """q over the full target vocabulary (float64, CPU) from logits over the draft vocabulary; zero outside
    it. None for greedy decoding, where no distribution is needed."""
    if temperature == 0.0:
        return None
    q_draft = target_probs(draft_logits, temperature)
    if vocab_ids is None:
        if q_draft.numel() != vocab_size:
            raise ValueError(f"draft logits cover {q_draft.numel()} tokens, target vocabulary is {vocab_size}")
        return q_draft
    q = torch.zeros(vocab_size, dtype=torch.float64)
    q[vocab_ids.to("cpu", torch.long)] = q_draft
    return q


def sample_token(probs: torch.Tensor, generator: torch.Generator) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """normalize(max(0, p - q)). A reject has probability sum(max(0, q - p)) = sum(max(0, p - q)), so the
    mass is positive whenever a reject can happen; only rounding can empty it, and then p itself is right."""
    r = torch.clamp(p - q, min=0.0)
    total = float(r.sum())
    return r / total if total > 0.0 else p


def speculative_verify(p: torch.Tensor, q: torch.Tensor, draft_token: int,
                       generator: torch.Generator) -> VerifyResult:
    """Accept ``draft_token`` (sampled from q) with probability min(1, p(x)/q(x)); else resample from the
    residual. ``p`` and ``q`` are float64 CPU distributions over the same (full) vocabulary."""
    px, qx = float(p[draft_token]), float(q[draft_token])
    if qx <= 0.0:
        raise ValueError(f"draft token {draft_token} has probability 0 under its own draft distribution")
    u = float(torch.rand((), dtype=torch.float64, generator=generator))
    if u * qx < px:  # u < p/q without dividing; always true when p >= q
        return VerifyResult(True, draft_token)
    return VerifyResult(False, sample_token(residual_distribution(p, q), generator))


class Verifier:
    """Owns the generator of one generation; :meth:`reset` reseeds it (call at the start of each)."""

    def __init__(self, sampling: SamplingConfig) -> None:
        self.sampling = sampling
        self.reset()

    def reset(self) -> None:
        self.generator = torch.Generator().manual_seed(int(self.sampling.seed))

    def first_token(self, logits: torch.Tensor) -> int:
        """The token after the prompt (no draft to verify): argmax, or a sample from p."""
        if self.sampling.greedy:
            return int(logits.argmax())
        return sample_token(target_probs(logits, self.sampling.temperature), self.generator)

    def verify(self, logits: torch.Tensor, draft_token: int, q: torch.Tensor | None) -> VerifyResult:
        """``logits``: the target's logits for the draft's position; ``q``: the draft's full-vocabulary
        distribution (ignored when greedy)."""
        if self.sampling.greedy:
            target = int(logits.argmax())
            return VerifyResult(target == draft_token, target)
        if q is None:
            raise ValueError("sampling verification needs the draft distribution q")
        return speculative_verify(target_probs(logits, self.sampling.temperature), q, draft_token, self.generator)
