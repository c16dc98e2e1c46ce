"""How the delta scorer takes each changed sender into the pattern sums ``t_u = sum_{s in u} delta_s`` of the receivers
it reaches (``circuits.acdc.attention.scorer.Scorer._pattern_sum``): per sender, whether a pattern reads it, and as
what product (the sender's outputs node-first, ``(a, ...)``; the sums pattern-first, ``(U, ...)``)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def recipe(patterns: Tensor, sizes: list[int], dtype: torch.dtype) -> list[tuple[Optional[str], Optional[Tensor]]]:
    """How ``Scorer._pattern_sum`` takes each part (``sizes``: its nodes) into the ``U`` pattern sums: None (no pattern
    reads it), "all" (one pattern reading its one node), "sum" (one pattern reading all its nodes), "scale" (one
    node: times each pattern's 0/1) or "mm" (the ``(U, a)`` 0/1 matrix)."""
    out: list[tuple[Optional[str], Optional[Tensor]]] = []
    off, U = 0, patterns.shape[0]
    for a in sizes:
        p = patterns[:, off:off + a]
        off += a
        if not bool(p.any()):
            out.append((None, None))
        elif U == 1 and bool(p.all()):
            out.append(("all" if a == 1 else "sum", None))
        else:
            out.append(("scale" if a == 1 else "mm", p.to(dtype).reshape(U, a) if a > 1 else p[:, 0].to(dtype)))
    return out


def term(t: Tensor, how: str, w: Optional[Tensor]) -> Tensor:
    """One node-first part ``t (a, ...)`` taken into the pattern sums as ``recipe`` says (``how`` not None)."""
    if how == "all":
        return t
    if how == "sum":
        return t.sum(0, keepdim=True)
    if how == "scale":
        return w.view(-1, *[1] * (t.dim() - 1)) * t
    return (w @ t.reshape(t.shape[0], -1)).view(w.shape[0], *t.shape[1:])
