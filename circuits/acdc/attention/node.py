"""One receiver node's candidates decided by speculate and verify (the attention engine's inner step, both paths):
guess the decisions (``speculate.Guesser``), build the chain of states the sequential loop would visit under them,
score the chain in one pass (``stack.score``), accept decisions up to the first that differs from its guess."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from circuits.acdc.loop import Problem


def decide_node(p: Problem, stack: Any, receiver: str, r: int, cands: list, c: Tensor, sizes: list[float],
                current: float, k_max: int, offset: Optional[Tensor] = None) -> tuple[list[float], list[bool], float]:
    """Decide the candidate edges ``cands`` (``(connection, sender node)``, contributions ``c`` of squared norms
    ``sizes``, none exactly 0) into ``R[r]`` in the sequential order, up to ``k_max`` states per pass; returns each
    edge's effect, whether it was removed (also cleared in ``p.mask`` as the loop goes: later states are scored
    without it), and the metric after them.

    Which states a pass scores (how many, under which guesses) is ``stack.guesser``'s choice; after a miss, the
    states scored past it give the next guesses. ``offset`` (delta path: states are scored against a cached
    baseline taken before this node's removals) becomes, after each pass, the input change of the state of the node's
    last removal so far (the sum of the removed contributions)."""
    rescored: list[Optional[bool]] = [None] * len(cands)  # guesses read from states scored in an earlier pass
    effects: list[float] = []
    removed: list[bool] = []
    pos = 0
    while pos < len(cands):
        prior, miss = stack.guesser.prior(sizes[pos:])
        guess = [prior[i - pos] if rescored[i] is None else rescored[i] for i in range(pos, len(cands))]
        again = stack.guesser.rescored()
        q = [miss[i - pos] if rescored[i] is None else again for i in range(pos, len(cands))]
        end = pos + stack.guesser.block(q, k_max)
        extra = _chain(c[pos:end], guess[:end - pos], offset)
        scores = stack.score(r, extra).tolist()
        premised = _premised(scores, guess, current)
        cur, last = current, None
        for i, new in enumerate(scores):
            conn, s = cands[pos + i]
            effects.append(new - cur)
            removed.append(new - cur < p.threshold)
            stack.guesser.remember(sizes[pos + i], removed[-1])
            stack.guesser.observe(q[i], removed[-1] != guess[i], rescored[pos + i] is not None)
            if removed[-1]:
                p.mask[(conn.sender, receiver)][r, s] = False
                cur = new
                stack.accepted(i)
                last = i
            if removed[-1] != guess[i]:
                for j in range(i + 1, len(scores)):
                    rescored[pos + j] = premised[j] < p.threshold
                break
        if offset is not None and last is not None:  # the input change of the last removal's state, as scored
            offset.copy_(extra[last])
        current, pos = cur, pos + i + 1
    return effects, removed, current


def _chain(c: Tensor, guess: list[bool], offset: Optional[Tensor]) -> Tensor:
    """The input changes of the chain of states: state ``j`` adds the contributions guessed removed before it, its
    own, and ``offset`` (when given): one product ``offset + M c`` with ``M`` lower triangular (the guesses below
    the diagonal, ones on it)."""
    k = c.shape[0]
    M = torch.tril(torch.tensor(guess, dtype=c.dtype, device=c.device).expand(k, k), diagonal=-1)
    M.diagonal().fill_(1.0)
    flat = c.reshape(k, -1)
    out = torch.mm(M, flat) if offset is None else torch.addmm(offset.reshape(1, -1), M, flat)
    return out.view(c.shape)


def _premised(scores: list[float], guess: list[bool], current: float) -> list[float]:
    """Each state's effect in the chain the pass was built on: ``scores[j]`` minus the metric of the circuit the chain
    reached before ``j`` (the last state guessed removed, else ``current``). After a wrong guess at ``i`` this is the
    next guesses' estimate for ``j > i``: the effect of ``j`` with ``i``'s decision the other way (to first order the
    same), where ``scores[j]`` minus the true current would carry ``i``'s own effect too."""
    out, cur = [], current
    for new, removed in zip(scores, guess):
        out.append(new - cur)
        if removed:
            cur = new
    return out
