"""The reference ACDC engine: one patched forward pass per tested edge, through the model's hook points
(``run_with_hooks``, as the ACDC codebase does), straight from the loop of ``circuits.acdc.loop``."""

from __future__ import annotations

from circuits.acdc.loop import Problem, clean_up, drop_if_dead, receiver_order, unchanged_edges
from circuits.graph import Edge
from circuits.patching import EdgeMask


def reference_engine(p: Problem) -> tuple[EdgeMask, dict[Edge, float], int]:
    """One patched forward pass per tested edge, straight from the SPEC loop (ties: ``unchanged_edges``); returns
    (final mask, effect ``new - current`` per tested edge in test order, number of edges tested)."""
    graph, mask = p.graph, p.mask
    current = p.score(mask)
    effects: dict[Edge, float] = {}
    for receiver in receiver_order(graph, p.progress):
        conns = graph.connections_into(receiver)
        unchanged = unchanged_edges(p, receiver)
        for r in range(graph.nodes[receiver].count):
            if drop_if_dead(graph, mask, receiver, r):
                continue
            for c in conns:
                m, same = mask[(c.sender, receiver)], unchanged[c.sender][r].tolist()
                for s in range(graph.nodes[c.sender].count):
                    if not bool(m[r, s]):
                        continue
                    m[r, s] = False
                    new = current if same[s] else p.score(mask)
                    effects[Edge(c.sender, s, receiver, r)] = new - current
                    if new - current < p.threshold:
                        current = new
                    else:
                        m[r, s] = True
    clean_up(graph, mask)
    return mask, effects, len(effects)
