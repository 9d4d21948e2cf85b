"""Acceptance processes: where the accept/reject outcomes of a simulated run come from.

Two shapes of consumer:

* one-token drafters (SPD, PPSD): each verification is one accept (1) / reject (0) outcome,
  :meth:`AcceptanceSource.outcomes` / :meth:`AcceptanceSource.next_outcome`;
* chain drafters (SD, EAGLE-3): a round of m drafts yields the number of leading accepted drafts
  (0..m), :meth:`ChainSource.rounds` / :meth:`ChainSource.next_round`.

Forms (``sim.scenario.Acceptance``):

* ``alpha`` (and forms converted to it): i.i.d. Bernoulli(alpha);
* ``per_position``: chain position k is accepted with conditional probability ``a_k`` (positions past
  the list keep the last value). A one-token drafter uses ``a_1`` (the same rule as the closed form,
  ``sim.methods._common.single_draft_alpha``);
* ``markov``: a two-state chain, P(accept | previous accepted) and P(accept | previous rejected),
  started from its stationary distribution (bursts of rejects);
* ``sequence``: a recorded 0/1 sequence replayed in order; when a run needs more outcomes than were
  recorded it starts again from the beginning, and :attr:`wraps` counts how often (the result says so).

Like the latency streams, every source is generated in fixed-size chunks from its own seeded
Generator, so the vectorised and the event-by-event consumers see the same outcomes.
"""
from __future__ import annotations

import zlib

import numpy as np

from ..scenario import Acceptance

_CHUNK = 4096


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(zlib.crc32(name.encode()),)))


class _Buffered:
    """Hands out items of fixed-size generated chunks, one at a time or many at once."""

    def __init__(self):
        self._buf = np.empty(0, dtype=np.int64)
        self._pos = 0

    def _fresh(self) -> np.ndarray:  # one chunk of items
        raise NotImplementedError

    def next(self) -> int:
        if self._pos >= len(self._buf):
            self._buf, self._pos = self._fresh(), 0
        v = self._buf[self._pos]
        self._pos += 1
        return int(v)

    def take(self, size: int) -> np.ndarray:
        parts = []
        while size > 0:
            if self._pos >= len(self._buf):
                self._buf, self._pos = self._fresh(), 0
            k = min(size, len(self._buf) - self._pos)
            parts.append(self._buf[self._pos:self._pos + k])
            self._pos += k
            size -= k
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# ----------------------------------------------------------------------------------------- bits
class _IidBits(_Buffered):
    def __init__(self, p: float, rng: np.random.Generator):
        super().__init__()
        self.p, self.rng = p, rng

    def _fresh(self):
        return (self.rng.random(_CHUNK) < self.p).astype(np.int64)


class _MarkovBits(_Buffered):
    """Alternating runs: an accept run lasts Geometric(1 - p_aa) draws, a reject run Geometric(p_ar)."""

    def __init__(self, p_aa: float, p_ar: float, rng: np.random.Generator):
        super().__init__()
        self.p_aa, self.p_ar, self.rng = p_aa, p_ar, rng
        a = p_aa
        stationary = p_ar / (1.0 - a + p_ar) if (1.0 - a + p_ar) > 0 else 1.0
        self._state = int(rng.random() < stationary)  # first outcome from the stationary distribution
        self._left = 0  # outcomes left in the current run

    def _run(self, state: int) -> int:
        stay = self.p_aa if state else 1.0 - self.p_ar  # probability the next outcome repeats this state
        return _CHUNK if stay >= 1.0 else int(self.rng.geometric(1.0 - stay))

    def _fresh(self):
        out = np.empty(_CHUNK, dtype=np.int64)
        i = 0
        while i < _CHUNK:
            if self._left == 0:
                self._left = self._run(self._state)
            k = min(self._left, _CHUNK - i)
            out[i:i + k] = self._state
            i += k
            self._left -= k
            if self._left == 0:
                self._state ^= 1
        return out


class _ReplayBits(_Buffered):
    def __init__(self, seq: tuple[int, ...]):
        super().__init__()
        self.seq = np.asarray(seq, dtype=np.int64)
        self.wraps = -1  # incremented at each (re)start: 0 = not wrapped yet

    def _fresh(self):
        self.wraps += 1
        return self.seq


# ------------------------------------------------------------------------------------------- public
class AcceptanceSource:
    """Accept/reject outcomes of successive one-token verifications (SPD, PPSD)."""

    def __init__(self, acc: Acceptance, seed: int, name: str = "acceptance"):
        self.form = acc.form
        rng = _rng(seed, name)
        if acc.sequence is not None:
            self._bits = _ReplayBits(acc.sequence)
        elif acc.markov is not None:
            self._bits = _MarkovBits(acc.markov.p_accept_after_accept, acc.markov.p_accept_after_reject, rng)
        else:
            self._bits = _IidBits(acc.per_position[0] if acc.per_position else acc.alpha, rng)

    def next_outcome(self) -> int:
        return self._bits.next()

    def outcomes(self, count: int) -> np.ndarray:
        return self._bits.take(count)

    @property
    def wraps(self) -> int:
        """How many times a replayed sequence was started over (0 for other forms)."""
        return max(getattr(self._bits, "wraps", 0), 0)


class _IidChain(_Buffered):
    """Rounds of m drafts with conditional per-position acceptance p_1..p_m (i.i.d. when all equal)."""

    def __init__(self, probs: np.ndarray, rng: np.random.Generator):
        super().__init__()
        self.probs, self.rng = probs, rng

    def _fresh(self):
        ok = self.rng.random((_CHUNK, len(self.probs))) < self.probs
        return np.cumprod(ok, axis=1).sum(axis=1)  # leading accepts


class _ChainFromBits(_Buffered):
    """Rounds cut from a bit stream: a round takes bits until the first reject, at most m bits."""

    def __init__(self, bits: _Buffered, m: int):
        super().__init__()
        self.bits, self.m = bits, m

    def _fresh(self):
        out = np.empty(_CHUNK, dtype=np.int64)
        for r in range(_CHUNK):
            a = 0
            while a < self.m and self.bits.next() == 1:
                a += 1
            out[r] = a
        return out


class ChainSource:
    """Accepted drafts per round (0..m) for chain drafters (SD with gamma = m, EAGLE-3 with steps = m)."""

    def __init__(self, acc: Acceptance, m: int, seed: int, name: str = "acceptance"):
        self.m = m
        rng = _rng(seed, name)
        if acc.sequence is not None:
            self._bits = _ReplayBits(acc.sequence)
            self._rounds = _ChainFromBits(self._bits, m)
        elif acc.markov is not None:
            self._bits = _MarkovBits(acc.markov.p_accept_after_accept, acc.markov.p_accept_after_reject, rng)
            self._rounds = _ChainFromBits(self._bits, m)
        else:
            self._bits = None
            self._rounds = _IidChain(np.array([acc.alpha_at(k) for k in range(1, m + 1)]), rng)

    def next_round(self) -> int:
        return self._rounds.next()

    def rounds(self, count: int) -> np.ndarray:
        return self._rounds.take(count)

    @property
    def wraps(self) -> int:
        return max(getattr(self._bits, "wraps", 0), 0) if self._bits is not None else 0
