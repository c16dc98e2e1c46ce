"""The reference ACDC engine: one patched forward pass per tested edge, through the model's hook points
(``run_with_hooks``, as the ACDC codebase does), each edge decided in ``circuits.acdc.loop``'s order."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from circuits.acdc.loop import Decisions, Node, Problem, Stats
from circuits.patching import run_with_mask


def unchanged_edges(p: Problem, receiver: str) -> dict[str, Bool[Tensor, "n_recv n_send"]]:
    """Per connection into ``receiver``: a ``(n_recv, n_send)`` mask of the edges whose removal changes nothing.

    Removing ``s -> r`` adds ``[contribute((a'_S - a_S)|_s)]|_r`` to the receiver, which is exactly 0 when
    ``a'_S == a_S`` on node ``s`` on every row or, for a declared dense weight, when ``W[r, s] == 0``: the loop's
    tie rule. ``a_S`` is the current circuit's sender activation, fixed while ``receiver`` is processed.
    """
    conns = p.graph.connections_into(receiver)
    senders = tuple(dict.fromkeys(c.sender for c in conns))
    _, cache = run_with_mask(p.model, p.clean, p.a_prime, p.mask, p.graph, senders)
    out = {}
    for c in conns:
        nodes = p.graph.nodes[c.sender]
        moved = p.a_prime[c.sender] != cache[c.sender]
        if nodes.axis is None:
            still = ~moved.any().reshape(1)
        else:
            still = ~moved.movedim(nodes.axis, 0).reshape(nodes.count, -1).any(dim=1)
        same = still.unsqueeze(0).expand(p.graph.nodes[receiver].count, nodes.count)
        out[c.sender] = same | (c.weight() == 0) if c.weight is not None else same.clone()
    return out


class Reference:
    """``loop.Decider`` by plain patched forward passes: ``new = metric(C without e)`` for each edge in order."""

    path = "reference"

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.stats = Stats()
        self._unchanged: dict[str, Tensor] = {}

    def start(self) -> float:
        return self.p.score(self.p.mask)

    def enter(self, receiver: str) -> None:
        self._unchanged = unchanged_edges(self.p, receiver)

    def unchanged(self, node: Node) -> tuple[Tensor, ...]:
        return tuple(self._unchanged[s.conn.sender][node.index][s.senders] for s in node.spans)

    def decide(self, node: Node, current: Any) -> Decisions:
        effects, removed = [], []
        for span in node.spans:
            m = self.p.mask[(span.conn.sender, node.receiver)]
            eff, gone = [], []
            for s in span.senders.tolist():
                m[node.index, s] = False
                new = self.p.score(self.p.mask)
                eff.append(new - current)
                gone.append(new - current < self.p.threshold)
                if gone[-1]:
                    current = new
                else:
                    m[node.index, s] = True
            effects.append(torch.tensor(eff, dtype=torch.float64))
            removed.append(torch.tensor(gone, dtype=torch.bool))
        return Decisions(tuple(effects), tuple(removed), current)

    def settled(self, node: Node, decisions: Decisions) -> None:
        """Nothing cached to move: every score runs the model from the mask."""
