"""Planted circuits: models whose true circuit under resample ablation is known by construction.

This module is model-agnostic: ``PlantedCircuit`` (what a builder returns) and ``removal_effects`` (the
exact effect of removing each edge alone, by brute force, so a planted claim can be checked). The
builders live with the models they build (``hooked_bimt.zoo.planted``: ``planted_mlp``,
``planted_residual_mlp``, ``planted_attn_only``, ``FAMILIES``); the construction in every family:

* **signal paths**: input features (tokens) that differ between the clean and corrupted batches reach
  one logit each through a chain of edges with weights of order 1; removing any edge of a chain moves
  the logits by O(1) (KL effect ~ 0.1 - 1);
* **distractor paths**: features that also differ, reaching the logits through a weight ``eps``
  (KL effect ~ eps^2, tiny);
* **identical inputs**: features equal in the clean and corrupted batches; every edge that only carries
  them has exactly zero effect under resample ablation (a' = a), whatever its weight;
* **dead edges**: zero weights (zero effect).

``true_edges`` is the set of signal-path edges; every other edge's removal effect is at most ~eps^2.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import torch
from torch import Tensor

from circuits.attribution import Metric, resolve_metric, node_slice
from circuits.graph import Edge, graph_of


class PlantedCircuit(NamedTuple):
    """A model, a clean/corrupted pair, the known circuit and the metric it holds for (a 5-tuple)."""

    model: Any
    clean: Tensor
    corrupted: Tensor
    true_edges: set[Edge]
    metric: str


def removal_effects(model: Any, clean: Tensor, corrupted: Tensor, metric: Union[str, Metric] = "kl",
                    edges: Optional[list[Edge]] = None) -> dict[Edge, float]:
    """Exact effect of removing ONE edge from the full model: ``M(full without e) - M(full)``.

    Brute force (one forward pass per edge): the receiver hook r gets its input plus the edge's
    contribution of ``a'_s - a_s`` (SPEC 4 patching), restricted to receiver node r. ``M`` compares with
    the clean logits, as in ACDC.
    """
    fn, _ = resolve_metric(metric, "auto", None)
    graph = graph_of(model)
    edges = list(graph.edges()) if edges is None else list(edges)
    for e in edges:
        graph.check_edge(e)
    cache: dict[str, dict[str, Tensor]] = {"clean": {}, "bad": {}}

    def saver(which: str):
        def save(t: Tensor, hook: Any) -> None:
            cache[which][hook.name] = t.detach()
        return save

    with torch.no_grad():
        senders = graph.senders()
        full = model.run_with_hooks(clean, fwd_hooks=[(s, saver("clean")) for s in senders])
        model.run_with_hooks(corrupted, fwd_hooks=[(s, saver("bad")) for s in senders])
        base = float(fn(full, full))
        conns = {(c.sender, c.receiver): c for c in graph.connections}
        out: dict[Edge, float] = {}
        for e in edges:
            delta = cache["bad"][e.sender] - cache["clean"][e.sender]
            shift = conns[(e.sender, e.receiver)].contribute(node_slice(delta, graph.nodes[e.sender], e.sender_index))
            shift = node_slice(shift, graph.nodes[e.receiver], e.receiver_index)
            logits = model.run_with_hooks(clean, fwd_hooks=[(e.receiver, lambda t, hook, s=shift: t + s)])
            out[e] = float(fn(logits, full)) - base
    return out
