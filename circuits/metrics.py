"""Metrics for circuit discovery: ``metric(logits, full_logits) -> scalar``, to be minimised.

Each metric is a ``Metric``: callable on ``(batch, classes)`` logits (or a transformer's ``(batch, pos, vocab)``:
the built-in ``kl`` and ``logit_diff`` then read the last position unless given ``pos=``), with a ``name`` (recorded in
``Circuit.settings``) and a batched form ``many(logits (..., batch, classes), full) -> (...)`` that
the fast engine uses to score many candidate circuits at once.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Metric:
    """A named metric. ``fn(logits, full)`` works on any leading dims before ``(batch, classes)``.

    ``kind`` says what it computes where an engine may compute it its own way: ``"kl"`` is ``kl()``'s whole-logits
    KL (``_kl``; the fast MLP engine then scores only changed classes, ``ChangedKL``); anything else is ``"custom"``,
    only ever called."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    batched: bool = True
    kind: str = "custom"

    def __call__(self, logits: Float[Tensor, "batch classes"], full_logits: Float[Tensor, "batch classes"]) -> Tensor:
        return self.fn(logits, full_logits)

    def many(self, logits: Float[Tensor, "n batch classes"], full_logits: Float[Tensor, "batch classes"]) -> Float[Tensor, " n"]:
        """The metric of each of ``n`` stacked runs."""
        if self.batched:
            return self.fn(logits, full_logits)
        return torch.stack([torch.as_tensor(self.fn(x, full_logits)) for x in logits])


def _entropy_terms(full_logits: Tensor) -> tuple[Tensor, Tensor]:
    """``p_full = softmax(full)`` and ``sum_c p_full log p_full`` from ``log_softmax`` (a class whose
    probability underflows to 0 contributes exactly 0, never ``0 * -inf``)."""
    logp_full = torch.log_softmax(full_logits, dim=-1)
    p_full = logp_full.exp()
    return p_full, torch.where(p_full > 0, p_full * logp_full, torch.zeros_like(p_full)).sum(dim=-1)


def _kl(logits: Tensor, full_logits: Tensor) -> Tensor:
    """``mean_b sum_c p_c (log p_c - log q_c)`` with both log-probabilities from ``log_softmax``.

    ``log_softmax(x)_c = x_c - max x - log sum_d exp(x_d - max x)`` is finite for any finite logits, so
    classes ~100+ below the maximum (whose probabilities underflow, in float32 too) give no -inf or NaN;
    classes with ``p_c == 0`` contribute exactly 0.
    """
    if full_logits.dim() == 3:  # sequences (batch, pos, vocab): the last position (kl(pos=...) for others)
        logits, full_logits = select_positions(logits, full_logits, -1)
    logq = torch.log_softmax(logits, dim=-1)
    logp_full = torch.log_softmax(full_logits, dim=-1)
    p_full = logp_full.exp()
    terms = torch.where(p_full > 0, p_full * (logp_full - logq), torch.zeros_like(logq))
    return terms.sum(dim=-1).mean(dim=-1)


class KLBase(NamedTuple):
    """``ChangedKL.base``: what does not depend on ``delta`` (see there)."""

    y_rows: Tensor
    const: Tensor
    rest: Tensor
    exp_rest: Tensor
    rest_min: float


class PairBase(NamedTuple):
    """``ChangedKL.pair_base``: ``KLBase`` plus ``p_full[:, rows]``, the tensors contiguous ``(batch, r)``."""

    y_rows: Tensor
    const: Tensor
    rest: Tensor
    exp_rest: Tensor
    rest_min: float
    p_rows: Tensor


class ChangedKL:
    """The KL of many logit tensors that differ from one base ``x0`` on a few classes only (fast ACDC).

    With ``x = x0 + delta`` on the classes ``rows`` (``delta``: ``(n, batch, len(rows))``), a shift
    ``s_b = max_c x0[b, c]`` and ``y = x - s``, the KL of ``kl()`` equals (using ``sum_c p_c = 1``)

        KL_b = sum_c p_c log p_c - sum_c p_c y0_c - sum_{c in rows} p_c delta_c
               + logaddexp( logsumexp_{c not in rows} y0_c,  logsumexp_{c in rows} (y0_c + delta_c) )

    so only the changed classes are touched per candidate; both log-sum-exps are the stable ones
    (finite for any finite logits, whatever their range), the unchanged-class one is computed once
    per base (``base``).
    """

    def __init__(self, full_logits: Float[Tensor, "batch classes"]) -> None:
        self.p_full, self.neg_entropy = _entropy_terms(full_logits)

    def base(self, x0: Float[Tensor, "batch classes"], rows: Tensor) -> KLBase:
        """What does not depend on ``delta``: ``y0[:, rows]``, ``sum p log p - sum p y0``, the log-sum-exp
        ``rest`` over the other classes (-inf if none), ``exp(rest)`` and ``min(rest)``."""
        y0 = x0 - x0.amax(dim=-1, keepdim=True)
        keep = torch.ones(x0.shape[-1], dtype=torch.bool, device=x0.device)
        keep[rows] = False
        rest = torch.logsumexp(y0[:, keep], dim=-1) if bool(keep.any()) else torch.full_like(y0[:, 0], -math.inf)
        return KLBase(y0[:, rows], self.neg_entropy - (self.p_full * y0).sum(dim=-1), rest, rest.exp(), float(rest.min()))

    def __call__(self, base: KLBase, rows: Tensor, delta: Float[Tensor, "n batch r"],
                 per_example: bool = False, classes_first: bool = False) -> Tensor:
        """``KL(x0 + delta on rows)`` for each of the ``n`` deltas: ``(n,)``, or ``(n, batch)`` per example;
        ``classes_first``: ``delta`` is laid out ``(r, n, batch)`` (what ``W @ d_act^T`` gives).

        The log-sum-exp takes one exp pass, ``log(exp(rest) + sum_rows exp(y))``, when that can neither
        overflow nor lose the sum to underflow (every ``delta`` below ``log(max float) - 10``, and ``rest``
        or every ``delta`` above ``log(tiny) + 10``); otherwise the stable
        ``logaddexp(rest, logsumexp(y))``. Both compute the same number to a few ulps.
        """
        y_rows, const, rest, exp_rest, rest_min = base
        if classes_first:  # delta (r, n, batch): the same sums over the leading (class) axis
            y_rows, p_rows, axis = y_rows.T.unsqueeze(1), self.p_full[:, rows].T.unsqueeze(1), 0
        else:
            p_rows, axis = self.p_full[:, rows], -1
        out = self._terms(y_rows, p_rows, const, rest, exp_rest, rest_min, delta, axis)
        return out if per_example else out.mean(dim=-1)

    def pair_base(self, x0: Float[Tensor, "batch classes"], rows: Tensor) -> PairBase:
        """``base`` plus ``p_full[:, rows]``, both ``(batch, r)`` and contiguous (``at`` gathers their rows)."""
        b = self.base(x0, rows)
        return PairBase(b.y_rows.contiguous(), b.const, b.rest, b.exp_rest, b.rest_min, self.p_full[:, rows].contiguous())

    def at(self, pbase: PairBase, delta: Float[Tensor, "r pairs"],
           examples: Int[Tensor, " pairs"]) -> Float[Tensor, " pairs"]:
        """Per-example ``KL_b`` of ``x0[b] + delta[:, q]`` on ``rows`` for each pair ``q``, ``b = examples[q]``
        (the fast engine scores only the examples a candidate moves); ``pbase = pair_base(x0, rows)``; the
        formula of ``__call__``, one column per pair."""
        y_rows, const, rest, exp_rest, rest_min, p_rows = pbase  # a PairBase
        at = lambda t: t.index_select(0, examples)  # noqa: E731  (row gathers, then the (r, pairs) layout)
        return self._terms(at(y_rows).T, at(p_rows).T, at(const), at(rest), at(exp_rest), rest_min, delta, 0)

    def _terms(self, y_rows: Tensor, p_rows: Tensor, const: Tensor, rest: Tensor, exp_rest: Tensor, rest_min: float,
               delta: Tensor, axis: int) -> Tensor:
        """``const - sum_rows p delta + log-sum-exp`` over the class axis ``axis`` (``__call__``'s formula)."""
        y = y_rows + delta
        if self._one_pass(delta, rest_min):
            lse = torch.log(exp_rest + y.exp().sum(dim=axis))
        else:
            lse = torch.logaddexp(rest, torch.logsumexp(y, dim=axis))
        return const - (delta * p_rows).sum(dim=axis) + lse

    def per_example(self, x0: Float[Tensor, "batch classes"]) -> Float[Tensor, " batch"]:
        """``KL_b`` of ``x0`` itself, per example (the same formula with nothing changed)."""
        every = torch.arange(x0.shape[-1], device=x0.device)
        return self(self.base(x0, every), every, torch.zeros_like(x0).unsqueeze(0), per_example=True)[0]

    @staticmethod
    def _one_pass(delta: Tensor, rest_min: float) -> bool:
        """Whether ``log(exp(rest) + sum exp(y))`` can neither overflow nor lose the sum to underflow."""
        info = torch.finfo(delta.dtype)
        hi, lo = math.log(info.max) - 10.0, math.log(info.tiny) + 10.0
        # y <= max(delta) as y0 <= 0; an example whose top class of x0 (y0 = 0) is in rows has a y >= min(delta),
        # any other has rest >= 0
        d_lo, d_hi = (float(v) for v in torch.aminmax(delta)) if delta.numel() else (0.0, 0.0)
        return d_hi < hi and (rest_min > lo or d_lo > lo)


Pos = Union[int, slice, Tensor, None]


def check_pos(pos: Any) -> Pos:
    """Validate a position choice: an int, a slice, None (every position) or an integer index tensor
    ``(batch,)`` / ``(batch, k)`` (per-example positions)."""
    if pos is None or isinstance(pos, slice) or (isinstance(pos, int) and not isinstance(pos, bool)):
        return pos
    if isinstance(pos, Tensor) and not pos.is_floating_point() and pos.dtype != torch.bool and pos.dim() in (1, 2):
        return pos
    raise ValueError(f"pos must be an int, a slice, None or a 1-D/2-D integer index tensor, got {pos!r}")


def select_positions(logits: Float[Tensor, "*n batch seq vocab"], full: Float[Tensor, "batch seq vocab"], pos: Pos
                     ) -> tuple[Float[Tensor, "*n rows vocab"], Float[Tensor, "rows vocab"]]:
    """Sequence logits at the chosen positions, positions folded into the batch: ``rows = batch * k``.

    Classification logits (``full`` is ``(batch, classes)``) pass through unchanged. ``pos``: an int (default
    -1, the last position), a slice, None (all positions), or an integer tensor ``(batch,)`` or ``(batch, k)`` of
    per-example positions. A metric averaged over rows then averages over examples and chosen positions.
    """
    if full.dim() != 3:
        return logits, full
    seq = full.shape[1]
    if pos is None or isinstance(pos, slice):
        pick = torch.arange(seq, device=full.device)[pos if pos is not None else slice(None)]
        idx = pick.unsqueeze(0).expand(full.shape[0], -1)
    elif isinstance(pos, int):
        if not -seq <= pos < seq:
            raise ValueError(f"pos={pos} is out of range for sequences of length {seq}")
        idx = torch.full((full.shape[0], 1), pos % seq, device=full.device)
    else:
        idx = (pos if pos.dim() == 2 else pos.unsqueeze(1)).to(full.device)
        if idx.shape[0] != full.shape[0]:
            raise ValueError(f"pos index tensor of shape {tuple(pos.shape)} has {idx.shape[0]} rows for a batch of "
                             f"{full.shape[0]} sequences: give one position (or row of positions) per example")
        bad = (idx < -seq) | (idx >= seq)
        if bool(bad.any()):
            rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
            raise ValueError(f"pos holds positions {idx[bad][:5].tolist()} (examples {rows}) outside sequences of "
                             f"length {seq}: positions must lie in -{seq}..{seq - 1}")
        idx = idx % seq
    if idx.shape[1] == 0:
        raise ValueError(f"pos={pos!r} selects no position of sequences of length {seq}")

    def gather(x: Tensor) -> Tensor:
        index = idx.unsqueeze(-1).expand(*x.shape[:-3], *idx.shape, x.shape[-1])
        return torch.gather(x, -2, index).flatten(-3, -2)

    return gather(logits), gather(full)


def kl(pos: Pos = -1) -> Metric:
    """``KL(softmax(full) || softmax(logits))`` averaged over the batch:
    ``mean_b sum_c p_full[b,c] (log p_full[b,c] - log p[b,c])``, stable for any finite logits (``_kl``). On sequence logits ``(batch, pos, vocab)`` it
    reads position ``pos`` (default the last; a slice, None or a per-example index tensor averages over the
    chosen positions too, ``select_positions``)."""
    pos = check_pos(pos)
    if isinstance(pos, int) and pos == -1:
        return Metric("kl", _kl, kind="kl")
    return Metric(f"kl(pos={_pos_name(pos)})", lambda logits, full: _kl(*select_positions(logits, full, pos)))


def _pos_name(pos: Pos) -> str:
    return "per-example" if isinstance(pos, Tensor) else repr(pos)


def _check_labels(labels: Any, name: str) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer tensor of class indices, got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and int(labels.min()) < 0:  # a negative index would silently count from the last class
        raise ValueError(f"{name} must be class indices >= 0, got {int(labels.min())}")
    return labels


def _check_distinct_labels(clean_labels: Tensor, corrupt_labels: Tensor) -> None:
    """``logit_diff(y, y)`` is 0 for every circuit (an error); some equal pairs add 0 to the mean (a warning)."""
    same = clean_labels == corrupt_labels
    if len(same) and bool(same.all()):
        raise ValueError("logit_diff: clean_labels and corrupt_labels are identical, so the logit difference is 0 for "
                         "every circuit and every effect 0; give each example its corrupted answer as corrupt_labels")
    if bool(same.any()):
        warnings.warn(f"logit_diff: {int(same.sum())} of {len(same)} examples have the same clean and corrupt label; "
                      "they add 0 to the mean logit difference", UserWarning, stacklevel=3)


def logit_diff(clean_labels: Int[Tensor, " batch"], corrupt_labels: Int[Tensor, " batch"], pos: Pos = -1) -> Metric:
    """``-mean_b (logits[b, clean_label_b] - logits[b, corrupt_label_b])`` (``full_logits`` only gives the shape).

    On sequence logits ``(batch, pos, vocab)`` it reads position ``pos`` (default the last); with several
    positions per example (a slice, None, a ``(batch, k)`` index tensor) each example's label is used at each
    of its positions and the mean runs over examples and positions. Identical label tensors are refused (the
    metric would be 0 for every circuit), some equal pairs warned about; a label outside the logits' classes is
    refused on the first call, which ACDC and EAP make on the full circuit before any search."""
    clean_labels = _check_labels(clean_labels, "clean_labels")
    corrupt_labels = _check_labels(corrupt_labels, "corrupt_labels")
    if clean_labels.shape != corrupt_labels.shape:
        raise ValueError(f"clean_labels and corrupt_labels differ in length: {len(clean_labels)} vs {len(corrupt_labels)}")
    _check_distinct_labels(clean_labels, corrupt_labels)
    pos = check_pos(pos)
    top = int(torch.maximum(clean_labels, corrupt_labels).max()) if len(clean_labels) else -1

    def fn(logits: Tensor, full_logits: Tensor) -> Tensor:
        n = len(clean_labels)
        if full_logits.shape[0] != n:
            raise ValueError(f"logit_diff: {n} labels for a batch of {full_logits.shape[0]}")
        if top >= full_logits.shape[-1]:
            raise ValueError(f"logit_diff: label {top} but the logits have {full_logits.shape[-1]} classes "
                             f"(vocabulary); labels must lie in 0..{full_logits.shape[-1] - 1}")
        logits, full_logits = select_positions(logits, full_logits, pos)
        k = full_logits.shape[0] // n  # positions per example (rows are example-major)
        c = clean_labels.to(logits.device).repeat_interleave(k)
        d = corrupt_labels.to(logits.device).repeat_interleave(k)
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
