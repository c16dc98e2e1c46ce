"""Metrics: the formulas, batched forms, resolution by name, clear errors."""

from __future__ import annotations

import pytest
import torch

from circuits import metrics


@torch.no_grad()
def test_kl_formula_and_zero_at_full():
    g = torch.Generator().manual_seed(0)
    logits, full = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    p, q = full.softmax(-1), logits.softmax(-1)
    want = (p * (p / q).log()).sum(-1).mean()
    assert float(metrics.kl()(logits, full)) == pytest.approx(float(want), rel=1e-12)
    assert float(metrics.kl()(full, full)) == pytest.approx(0.0, abs=1e-15)
    stacked = torch.stack([logits, full])
    torch.testing.assert_close(metrics.kl().many(stacked, full), torch.stack([want, torch.zeros((), dtype=torch.float64)]))


def test_logit_diff_is_minus_mean_difference():
    logits = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.5, 4.0]], dtype=torch.float64)
    m = metrics.logit_diff(torch.tensor([1, 2]), torch.tensor([0, 1]))
    assert float(m(logits, logits)) == pytest.approx(-((3 - 1) + (4 - 0.5)) / 2)
    assert m.name == "logit_diff"
    torch.testing.assert_close(m.many(torch.stack([logits, 2 * logits]), logits),
                               torch.tensor([-2.75, -5.5], dtype=torch.float64))


def test_resolve_names_callables_and_errors():
    assert metrics.resolve("kl").name == "kl"

    def my_metric(logits, full):
        return (logits - full).pow(2).mean()

    m = metrics.resolve(my_metric)
    assert m.name == "my_metric" and not m.batched
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(m.many(x, x[0]), torch.stack([my_metric(x[i], x[0]) for i in range(3)]))
    with pytest.raises(ValueError, match="unknown metric 'l2'"):
        metrics.resolve("l2")
    with pytest.raises(TypeError, match="metric must be"):
        metrics.resolve(3)
    with pytest.raises(ValueError, match="integer"):
        metrics.logit_diff(torch.tensor([0.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.logit_diff(torch.tensor([0, 1]), torch.tensor([1]))


# ---------------------------------------------------------------------------- KL numerics (issue 10)
import math  # noqa: E402

import mpmath  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def mp_kl(logits, full) -> float:
    """Independent reference: KL(softmax(full) || softmax(logits)) per row with 60-digit mpmath, batch-averaged."""
    mpmath.mp.dps = 60
    total = mpmath.mpf(0)
    for x_row, f_row in zip(logits.tolist(), full.tolist()):
        x = [mpmath.mpf(v) for v in x_row]
        f = [mpmath.mpf(v) for v in f_row]
        zx = mpmath.fsum(mpmath.exp(v) for v in x)
        zf = mpmath.fsum(mpmath.exp(v) for v in f)
        total += mpmath.fsum(mpmath.exp(fv) / zf * ((fv - mpmath.log(zf)) - (xv - mpmath.log(zx))) for xv, fv in zip(x, f))
    return float(total / len(logits))


@st.composite
def logit_pairs(draw):
    """(logits, full) with classes spread over up to 400 nats: many lie 100+ below their row's maximum."""
    b, c = draw(st.integers(1, 4)), draw(st.integers(2, 10))
    spread = draw(st.sampled_from([1.0, 10.0, 150.0, 400.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    full = (torch.rand(b, c, generator=g, dtype=torch.float64) - 0.5) * spread + draw(st.floats(-50, 50))
    logits = full + torch.randn(b, c, generator=g, dtype=torch.float64) * draw(st.sampled_from([1e-3, 0.3, 5.0, 200.0]))
    return logits, full


def tolerance(logits, full, dtype) -> float:
    """Rounding of log_softmax grows with the logits' range; the KL is a sum of such terms."""
    scale = 1.0 + float((logits - logits.amax(-1, keepdim=True)).abs().max() + (full - full.amax(-1, keepdim=True)).abs().max())
    return 64 * torch.finfo(dtype).eps * scale * logits.shape[-1]


@settings(max_examples=150, deadline=None)
@given(pair=logit_pairs(), dtype=st.sampled_from(sorted(DTYPES)))
def test_kl_is_finite_and_matches_mpmath_for_any_logits(pair, dtype):
    dt = DTYPES[dtype]
    logits, full = (t.to(dt) for t in pair)
    got = metrics.kl()(logits, full)
    assert got.dtype == dt and bool(torch.isfinite(got))
    assert float(got) == pytest.approx(mp_kl(logits.double(), full.double()), abs=tolerance(logits, full, dt))


@settings(max_examples=150, deadline=None)
@given(pair=logit_pairs(), dtype=st.sampled_from(sorted(DTYPES)), data=st.data())
def test_changed_kl_equals_the_kl_of_the_changed_logits(pair, dtype, data):
    """The fast engine's KL (only the classes ``rows`` change, by ``delta``) vs mpmath on x0 + delta."""
    dt = DTYPES[dtype]
    x0, full = (t.to(dt) for t in pair)
    c = x0.shape[-1]
    rows = torch.tensor(sorted(data.draw(st.sets(st.integers(0, c - 1), min_size=1, max_size=c))))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    n = data.draw(st.integers(1, 3))
    delta = (torch.randn(n, x0.shape[0], len(rows), generator=g, dtype=torch.float64)
             * data.draw(st.sampled_from([1e-4, 1.0, 150.0]))).to(dt)
    ckl = metrics.ChangedKL(full)
    got = ckl(ckl.base(x0, rows), rows, delta)
    assert got.shape == (n,) and bool(torch.isfinite(got).all())
    # the fast engine's (classes, n, batch) layout: the same numbers to rounding
    first = ckl(ckl.base(x0, rows), rows, delta.permute(2, 0, 1).contiguous(), per_example=True, classes_first=True)
    assert first.shape == (n, x0.shape[0])
    for i in range(n):
        x = x0.double().clone()
        x[:, rows] += delta[i].double()
        assert float(got[i]) == pytest.approx(mp_kl(x, full.double()), abs=tolerance(x, full, dt))
        assert float(first[i].mean()) == pytest.approx(mp_kl(x, full.double()), abs=tolerance(x, full, dt))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_with_classes_far_below_the_maximum(dtype):
    """The old formulas gave -inf/NaN once logits fell ~100 below the maximum in float32."""
    full = torch.tensor([[0.0, -120.0, 3.0], [500.0, -500.0, 0.0]], dtype=dtype)
    logits = torch.tensor([[-130.0, 0.0, -200.0], [-300.0, 400.0, 0.0]], dtype=dtype)
    got = metrics.kl()(logits, full)
    assert bool(torch.isfinite(got))
    assert float(got) == pytest.approx(mp_kl(logits.double(), full.double()), rel=1e-5)
    rows = torch.tensor([0])
    ckl = metrics.ChangedKL(full)
    moved = ckl(ckl.base(full, rows), rows, torch.tensor([[[-250.0], [-900.0]]], dtype=dtype))  # the max class drops
    x = full.double().clone()
    x[:, 0] += torch.tensor([-250.0, -900.0], dtype=torch.float64)
    assert bool(torch.isfinite(moved).all())
    assert float(moved[0]) == pytest.approx(mp_kl(x, full.double()), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift", [-900.0, -60.0, 0.5, 60.0, 800.0])
def test_changed_kl_both_log_sum_exp_paths(dtype, shift):
    """A class pushed up or down by ``shift`` (beyond exp's range in float32 at 60+, in float64 at 800):
    the one-pass and the stable log-sum-exp both match mpmath."""
    full = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 3.0, -2.0, 1.0]], dtype=dtype)
    for rows in (torch.tensor([0]), torch.tensor([0, 1, 2, 3])):
        ckl = metrics.ChangedKL(full)
        delta = torch.full((1, 2, len(rows)), shift, dtype=dtype)
        delta[..., 0] = -shift / 3
        got = ckl(ckl.base(full, rows), rows, delta)
        x = full.double().clone()
        x[:, rows] += delta[0].double()
        assert bool(torch.isfinite(got).all())
        assert float(got[0]) == pytest.approx(mp_kl(x, full.double()), rel=1e-5, abs=tolerance(x, full, dtype))
