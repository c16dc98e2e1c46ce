"""Percentile bootstrap: known intervals on synthetic samples, determinism, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hooked_bimt.study.bootstrap import bootstrap_ci


def test_matches_normal_theory_on_a_large_normal_sample():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=4000)
    ci = bootstrap_ci(x, n_resamples=2000, seed=1)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(x.size)  # analytic 95% half-width
    assert ci.mean == pytest.approx(x.mean())
    assert ci.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_constant_sample_is_exact():
    ci = bootstrap_ci([0.25] * 7)
    assert (ci.mean, ci.low, ci.high, ci.n) == (0.25, 0.25, 0.25, 7)


def test_seeded_and_reproducible():
    x = [1.0, 2.0, 5.0, 9.0]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    two_points = bootstrap_ci([0.0, 1.0], n_resamples=4000)
    # resample means of two points take values 0, 0.5, 1 with prob 1/4, 1/2, 1/4
    assert (two_points.low, two_points.high) == (0.0, 1.0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(0.5, 0.99))
def test_interval_contains_mean_within_range(xs, conf):
    ci = bootstrap_ci(xs, confidence=conf, n_resamples=1000)
    tol = 1e-9 * (1 + max(abs(v) for v in xs))
    assert min(xs) - tol <= ci.low <= ci.mean + tol and ci.mean - tol <= ci.high <= max(xs) + tol


@pytest.mark.parametrize(
    "args", [dict(samples=[]), dict(samples=[1.0, np.nan]), dict(samples=[1.0], n_resamples=999),
             dict(samples=[1.0], confidence=1.0)]
)
def test_bad_input(args):
    with pytest.raises(ValueError):
        bootstrap_ci(**args)
