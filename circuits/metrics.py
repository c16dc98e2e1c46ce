"""Metrics for circuit discovery: ``metric(logits, full_logits) -> scalar``, to be minimised.

Each metric is a ``Metric``: callable on ``(batch, classes)`` logits, with a ``name`` (recorded in
``Circuit.settings``) and a batched form ``many(logits (..., batch, classes), full) -> (...)`` that
the fast engine uses to score many candidate circuits at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Metric:
    """A named metric. ``fn(logits, full)`` works on any leading dims before ``(batch, classes)``."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    batched: bool = True

    def __call__(self, logits: Float[Tensor, "batch classes"], full_logits: Float[Tensor, "batch classes"]) -> Tensor:
        return self.fn(logits, full_logits)

    def many(self, logits: Float[Tensor, "n batch classes"], full_logits: Float[Tensor, "batch classes"]) -> Float[Tensor, " n"]:
        """The metric of each of ``n`` stacked runs."""
        if self.batched:
            return self.fn(logits, full_logits)
        return torch.stack([torch.as_tensor(self.fn(x, full_logits)) for x in logits])


def _kl(logits: Tensor, full_logits: Tensor) -> Tensor:
    # sum_c p_full (log p_full - logits) + logsumexp(logits): one exp pass over the (many) circuit logits
    logp_full = torch.log_softmax(full_logits, dim=-1)
    p_full = logp_full.exp()
    const = (p_full * logp_full).sum(dim=-1)
    return (const - (p_full * logits).sum(dim=-1) + torch.logsumexp(logits, dim=-1)).mean(dim=-1)


def kl() -> Metric:
    """``KL(softmax(full) || softmax(logits))`` averaged over the batch:
    ``mean_b sum_c p_full[b,c] (log p_full[b,c] - log p[b,c])``."""
    return Metric("kl", _kl)


def _check_labels(labels: Any, name: str) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer tensor of class indices, got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:  # a negative index would silently count from the last class
        raise ValueError(f"{name} must be class indices >= 0, got {int(labels.min())}")
    return labels


def logit_diff(clean_labels: Int[Tensor, " batch"], corrupt_labels: Int[Tensor, " batch"]) -> Metric:
    """``-mean_b (logits[b, clean_label_b] - logits[b, corrupt_label_b])`` (``full_logits`` unused)."""
    clean_labels = _check_labels(clean_labels, "clean_labels")
    corrupt_labels = _check_labels(corrupt_labels, "corrupt_labels")
    if clean_labels.shape != corrupt_labels.shape:
        raise ValueError(f"clean_labels and corrupt_labels differ in length: {len(clean_labels)} vs {len(corrupt_labels)}")

    def fn(logits: Tensor, full_logits: Tensor) -> Tensor:
        if logits.shape[-2] != len(clean_labels):
            raise ValueError(f"logit_diff: {len(clean_labels)} labels for a batch of {logits.shape[-2]}")
        c = clean_labels.to(logits.device)
        d = corrupt_labels.to(logits.device)
        rows = torch.arange(len(c), device=logits.device)
        return -(logits[..., rows, c] - logits[..., rows, d]).mean(dim=-1)

    return Metric("logit_diff", fn)


NAMED: dict[str, Callable[[], Metric]] = {"kl": kl}


def resolve(metric: Any) -> Metric:
    """A ``Metric`` from a name (``"kl"``), a ``Metric``, or a plain callable ``(logits, full) -> scalar``."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in NAMED:
            raise ValueError(
                f"unknown metric {metric!r}; expected one of {sorted(NAMED)}, circuits.metrics.logit_diff(...), or a callable"
            )
        return NAMED[metric]()
    if callable(metric):
        name: Optional[str] = getattr(metric, "__name__", None)
        return Metric(name or type(metric).__name__, metric, batched=False)
    raise TypeError(f"metric must be a name, a circuits.metrics.Metric or a callable, got {type(metric).__name__}")
