"""The ACDC loop both engines share (Conmy et al. 2023, Algorithm 1), exactly as SPEC 4:

    C = all edges (or the given subset); current = metric(C)
    for receiver hooks from the output backwards; receiver nodes j ascending:
        if j is hidden and its node has no outgoing edge left in C: drop all its incoming edges; continue
        for the sender hooks of j in connection order; sender nodes i ascending:
            new = metric(C without i->j)
            if new - current < threshold: C = C without i->j; current = new
        (tie rule: an edge whose removal changes nothing has new - current == 0 exactly, see unchanged_edges)
    finally drop edges out of hidden nodes with no incoming edge left (forward order, so it cascades).

This module holds the pieces of that order (the threshold rule, the dead-node and clean-up rules, the
receiver order) and ``Problem``, what an engine gets; ``reference.py`` and ``fast.py`` are the engines and
``discover.py`` the public ``acdc`` function.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import Tensor

from circuits.graph import Graph
from circuits.metrics import Metric
from circuits.patching import EdgeMask, run_with_mask


def check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if math.isnan(threshold) or threshold < 0:
        raise ValueError(f"threshold must be >= 0 and not NaN, got {threshold}")
    return float(threshold)


def has_outgoing(graph: Graph, mask: EdgeMask, hook: str, index: int) -> bool:
    """Whether node ``index`` of sender ``hook`` still has an edge in the circuit."""
    return any(bool(mask[(c.sender, c.receiver)][:, index].any()) for c in graph.connections if c.sender == hook)


def drop_incoming(graph: Graph, mask: EdgeMask, receiver: str, index: int) -> None:
    for c in graph.connections_into(receiver):
        mask[(c.sender, receiver)][index, :] = False


def drop_if_dead(graph: Graph, mask: EdgeMask, receiver: str, index: int) -> bool:
    """SPEC order's first step per receiver node: a hidden node with no outgoing edge left loses all its incoming
    edges (they can change nothing downstream). Returns True when it did (the node is then skipped)."""
    out = graph.node_output.get(receiver)
    if receiver != graph.output and out is not None and not has_outgoing(graph, mask, out, index):
        drop_incoming(graph, mask, receiver, index)
        return True
    return False


def clean_up(graph: Graph, mask: EdgeMask) -> None:
    """Drop edges out of hidden nodes that receive no edge, in forward order (so the rule cascades).

    A node may have several input hooks (an attention head's q/k/v inputs all map to its ``hook_z``):
    it receives nothing only if none of them has an incoming edge left.
    """
    device = next(iter(mask.values())).device
    outputs = list(dict.fromkeys(graph.node_output[r] for r in graph.receivers() if r in graph.node_output))
    for out in outputs:
        alive = torch.zeros(graph.nodes[out].count, dtype=torch.bool, device=device)
        for receiver, node_out in graph.node_output.items():
            if node_out == out:
                for c in graph.connections_into(receiver):
                    alive |= mask[(c.sender, receiver)].any(dim=1)
        for c in graph.connections:
            if c.sender == out:
                mask[(c.sender, c.receiver)][:, ~alive] = False


class Problem:
    """Everything an engine needs: graph, inputs, ``a'``, the full logits, the metric, the start mask."""

    def __init__(self, model: Any, graph: Graph, clean: Tensor, a_prime: dict[str, Tensor], metric: Metric,
                 threshold: float, mask: EdgeMask, progress: bool) -> None:
        self.model, self.graph, self.clean, self.a_prime = model, graph, clean, a_prime
        self.metric, self.threshold, self.mask, self.progress = metric, threshold, mask, progress
        with torch.no_grad():
            self.full_logits = model(clean)

    def score(self, mask: EdgeMask) -> float:
        logits, _ = run_with_mask(self.model, self.clean, self.a_prime, mask, self.graph)
        return float(self.metric(logits, self.full_logits))


def unchanged_edges(p: Problem, receiver: str) -> dict[str, Tensor]:
    """Per connection into ``receiver``: a ``(n_recv, n_send)`` mask of the edges whose removal changes nothing.

    The tie rule both engines apply: removing ``s -> r`` adds ``[contribute((a'_S - a_S)|_s)]|_r`` to the
    receiver, which is exactly 0 when ``a'_S == a_S`` on node ``s`` on every row or, for a declared dense
    weight, when ``W[r, s] == 0``. Such an edge has effect exactly 0 by rule (removed iff ``0 < threshold``,
    ``current`` unchanged), never a rounding residue of a cancellation. ``a_S`` is the current circuit's
    sender activation, fixed while ``receiver`` is processed (senders fire before their receiver).
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


def receiver_order(graph: Graph, progress: bool) -> Iterable[str]:
    """Receiver hooks from the output backwards (reverse forward order), with a progress bar if asked."""
    order = list(reversed(graph.receivers()))
    if progress:
        from circuits.progress import progress_bar

        return progress_bar(order, desc="acdc receivers")
    return order


