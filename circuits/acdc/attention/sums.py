"""Pattern sums of the fast attention engine's changes (``circuits.acdc.attention.scorer``): receiver nodes with
the same present edges from the changed senders get the same change ``t_u = sum_{s in pattern u} (new_s - cached_s)``,
summed once per distinct pattern. Senders' outputs come node-first, ``(a, n, B, T_l, d)`` (an MLP is one node); the
sums come out pattern-first, ``(U, n, B, T_l, d)``: with several patterns, one matrix product
``(U, a) @ (a, n B T_l d)`` per part, the parts added into the first in place.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

Parts = list[tuple[Tensor, Tensor, int]]  # (new (a, n, B, T_l, d), cached (a, B, T_l, d), level)


def _recipe(patterns: Tensor, sizes: list[int], dtype: torch.dtype) -> list[tuple[Optional[str], Optional[Tensor]]]:
    """How ``_pattern_sum`` takes each part (``sizes``: its nodes) into the ``U`` pattern sums: None (no pattern
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


def _term(t: Tensor, how: str, w: Optional[Tensor]) -> Tensor:
    """One node-first part ``t (a, ...)`` taken into the pattern sums as ``_recipe`` says (``how`` not None)."""
    if how == "all":
        return t
    if how == "sum":
        return t.sum(0, keepdim=True)
    if how == "scale":
        return w.view(-1, *[1] * (t.dim() - 1)) * t
    return (w @ t.reshape(t.shape[0], -1)).view(w.shape[0], *t.shape[1:])


class PatternSums:
    """``_sums`` for a scorer with ``pos`` (level -> positions) and ``_once`` (a per-node memo)."""

    pos: dict[int, Tensor]
    _once: Callable[[Any, Callable[[], Any]], Any]

    def _sums(self, parts: Parts, patterns: Tensor, level: int, key: Any = None) -> Tensor:
        """``t_u = sum_{s in pattern u} (new_s - cached_s)`` at ``level``'s positions, ``(U, n, B, T_level, d)``:
        the new outputs summed into one tensor, the cached ones (no state axis) apart and, under ``key``, once per
        node; one difference at the end. A sender known at the metric positions only but read at every position
        adds there alone (the other positions feed only outputs nothing reads)."""
        sizes = [t.shape[0] for t, _, _ in parts]
        make_recipe = lambda: _recipe(patterns, sizes, parts[0][0].dtype)  # noqa: E731
        recipe = make_recipe() if key is None else self._once(("recipe", key), make_recipe)
        new, fresh = self._pattern_sum([(t, slevel) for t, _, slevel in parts], recipe, level)
        make = lambda: self._pattern_sum([(t, slevel) for _, t, slevel in parts], recipe, level)[0]  # noqa: E731
        old = (make() if key is None else self._once(("cached sums", key, level), make)).unsqueeze(1)
        return new.sub_(old) if fresh else new - old

    def _pattern_sum(self, parts: list[tuple[Tensor, int]], recipe: list, level: int) -> tuple[Tensor, bool]:
        """Per pattern, the sum of the node-first parts ``(t (a, ..., T_l, d), level of t)`` it reads (``_recipe``),
        at ``level``'s positions, pattern-first; and whether the result is a new tensor (else a view of a part).
        The first part read makes the result, the others are added into it in place (one pass over it each)."""
        out: Optional[Tensor] = None
        fresh = False
        for (t, slevel), (how, w) in zip(parts, recipe):
            if how is None:
                continue
            if slevel > level:
                t = t.index_select(-2, self.pos[level])
            if out is None or not fresh or slevel < level:
                term = _term(t, how, w)
                if slevel < level:
                    term = self._widen(term) if out is None else term
                if out is None:
                    out, fresh = term, term is not t or slevel > level
                elif slevel < level:
                    if not fresh:
                        out, fresh = out.clone(), True
                    out.index_add_(out.dim() - 2, self.pos[1], term)
                else:
                    out, fresh = out + term, True
            elif how in ("all", "sum"):
                out.add_(t if how == "all" else t.sum(0, keepdim=True))
            elif how == "scale":
                out.addcmul_(w.view(-1, *[1] * (t.dim() - 1)), t)
            else:
                out.view(out.shape[0], -1).addmm_(w, t.reshape(t.shape[0], -1))
        assert out is not None
        return out, fresh

    def _widen(self, t: Tensor) -> Tensor:
        """``t`` known at the metric positions (axis -2), zero at every other position."""
        shape = list(t.shape)
        shape[-2] = self.pos[2].numel()
        full = t.new_zeros(shape)
        full.index_copy_(t.dim() - 2, self.pos[1], t)
        return full
