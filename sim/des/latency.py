"""Execution-time model: how long each piece of work takes, kept apart from the simulator core.

Every source of time (a stage forward, the draft, verify, a hop ...) is a named :class:`Stream`.
Each stream owns its own numpy ``Generator`` derived from (seed, stream name), and is consumed in
order: the i-th forward of stage 3 gets the i-th draw of the stream ``"stage3.forward"`` no matter
which model asks, or when. That is what lets the fast recurrence and the full dataflow model agree
to the last bit on the same seed even with jittery latencies, and what keeps runs reproducible
when an unrelated stream is added.

Distributions (``sim.scenario.Latency``):

* constant: always ``mean_ms`` (no random numbers are drawn);
* lognormal(mean, cv): ``exp(N(mu, sigma^2))`` with ``sigma^2 = ln(1 + cv^2)`` and
  ``mu = ln(mean) - sigma^2 / 2``, so the mean and the coefficient of variation are the given ones;
* empirical samples: uniform resampling (with replacement) of the measured durations.

A stream may be a sum of terms (e.g. ``layers x layer + stage_overhead``): each term is scaled by
its factor and drawn independently; a lognormal *layer* time is drawn once per forward and scaled
by the layer count (the jitter of a stage forward is per forward, not per layer).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..scenario import Latency

_CHUNK = 4096  # draws per refill: amortises numpy call overhead for the event-by-event model


@dataclass(frozen=True)
class Term:
    """``factor x latency``: e.g. 4 layers x timing_ms.layer."""

    latency: Latency
    factor: float = 1.0

    @property
    def is_constant(self) -> bool:
        return self.latency.is_constant or self.factor == 0.0

    @property
    def mean_ms(self) -> float:
        return self.factor * self.latency.mean_ms


@dataclass(frozen=True)
class TimeSpec:
    """A duration made of independent terms; its mean is the sum of the terms' means."""

    terms: tuple[Term, ...] = ()

    @staticmethod
    def const(ms: float) -> "TimeSpec":
        return TimeSpec((Term(Latency.constant(ms)),)) if ms else TimeSpec()

    @staticmethod
    def of(latency: Latency | None, factor: float = 1.0) -> "TimeSpec":
        return TimeSpec() if latency is None else TimeSpec((Term(latency, float(factor)),))

    def __add__(self, other: "TimeSpec") -> "TimeSpec":
        return TimeSpec(self.terms + other.terms)

    @property
    def is_constant(self) -> bool:
        return all(t.is_constant for t in self.terms)

    @property
    def mean_ms(self) -> float:
        return float(sum(t.mean_ms for t in self.terms))


def _draw_term(term: Term, rng: np.random.Generator, size: int) -> np.ndarray:
    lat = term.latency
    if term.is_constant:
        return np.full(size, term.mean_ms)
    if lat.kind == "lognormal":
        if lat.mean_ms == 0.0:
            return np.zeros(size)
        s2 = np.log1p(lat.cv * lat.cv)
        mu = np.log(lat.mean_ms) - 0.5 * s2
        return term.factor * rng.lognormal(mu, np.sqrt(s2), size)
    if lat.kind == "empirical":
        return term.factor * np.asarray(lat.samples_ms)[rng.integers(0, len(lat.samples_ms), size)]
    raise ValueError(f"unknown latency kind {lat.kind!r}")  # the scenario parser admits no other kind


def stream_rng(seed: int, name: str) -> np.random.Generator:
    """A Generator that depends only on (seed, name): streams are independent and stable."""
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(zlib.crc32(name.encode()),)))


class Stream:
    """An ordered sequence of durations (ms) for one named source of work."""

    __slots__ = ("name", "spec", "constant", "value", "_rng", "_buf", "_pos", "drawn")

    def __init__(self, name: str, spec: TimeSpec, seed: int):
        self.name = name
        self.spec = spec
        self.constant = spec.is_constant
        self.value = spec.mean_ms  # the constant, when constant
        self._rng = None if self.constant else stream_rng(seed, name)
        self._buf = np.empty(0)
        self._pos = 0
        self.drawn = 0

    def _fresh(self, size: int) -> np.ndarray:
        out = np.zeros(size)
        for term in self.spec.terms:
            out += _draw_term(term, self._rng, size)
        return out

    def next(self) -> float:
        """The next duration (event-by-event use)."""
        self.drawn += 1
        if self.constant:
            return self.value
        if self._pos >= len(self._buf):
            self._buf = self._fresh(_CHUNK)
            self._pos = 0
        v = self._buf[self._pos]
        self._pos += 1
        return float(v)

    def take(self, size: int) -> np.ndarray:
        """The next ``size`` durations as an array (vectorised use). Same values as ``size`` calls to next()."""
        self.drawn += size
        if self.constant:
            return np.full(size, self.value)
        parts = []
        have = len(self._buf) - self._pos
        if have:
            k = min(have, size)
            parts.append(self._buf[self._pos:self._pos + k])
            self._pos += k
            size -= k
        while size > 0:  # refill in the same chunk sizes next() uses, so both orders see the same numbers
            self._buf = self._fresh(_CHUNK)
            k = min(_CHUNK, size)
            parts.append(self._buf[:k])
            self._pos = k
            size -= k
        return np.concatenate(parts) if parts else np.empty(0)


class StreamSet:
    """All streams of one run, created on first use from the run's seed."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._streams: dict[str, Stream] = {}

    def get(self, name: str, spec: TimeSpec) -> Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = Stream(name, spec, self.seed)
        return s
