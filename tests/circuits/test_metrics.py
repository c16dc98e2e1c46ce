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
