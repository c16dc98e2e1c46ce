"""Percentile bootstrap confidence interval of a mean (SPEC 5: 95% over seeds x example batches).

Given samples x_1..x_n, draw B resamples of size n with replacement (seeded), take each resample's
mean m_b, and report the (alpha/2, 1 - alpha/2) percentiles of {m_b} around the sample mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MIN_RESAMPLES = 1000


@dataclass(frozen=True)
class Interval:
    """Sample ``mean`` with its bootstrap interval ``[low, high]`` from ``n`` samples."""

    mean: float
    low: float
    high: float
    n: int

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


def bootstrap_ci(
    samples: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of the mean: percentiles (a/2, 1-a/2) of B resample means, a = 1 - confidence.

    A constant sample gives exactly ``(c, c, c)``; one sample gives a zero-width interval.
    Raises ``ValueError`` for an empty sample, a non-finite value, ``n_resamples < 1000`` or a
    confidence outside (0, 1).
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci: the sample is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci: the sample contains NaN or infinite values")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < MIN_RESAMPLES:
        raise ValueError(f"bootstrap_ci: n_resamples must be an integer >= {MIN_RESAMPLES}, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0 or math.isnan(confidence):
        raise ValueError(f"bootstrap_ci: confidence must be in (0, 1), got {confidence!r}")
    mean = float(x.mean())
    if np.all(x == x[0]):
        return Interval(mean=float(x[0]), low=float(x[0]), high=float(x[0]), n=int(x.size))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // x.size)  # bound memory for large samples
    for s in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - s)
        means[s : s + k] = x[rng.integers(0, x.size, size=(k, x.size))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(mean=mean, low=float(low), high=float(high), n=int(x.size))
