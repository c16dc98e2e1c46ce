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

from circuits.graph import Edge, runnable_graph
from circuits.hook_settings import keeps_hook_settings
from circuits.metrics import Metric, resolve
from circuits.patching import check_batches, corrupted_activations, full_mask, model_device_dtype, run_with_mask
from circuits.protocol_check import check_declaration


class PlantedCircuit(NamedTuple):
    """A model, a clean/corrupted pair, the known circuit and the metric it holds for (a 5-tuple)."""

    model: Any
    clean: Tensor
    corrupted: Tensor
    true_edges: set[Edge]
    metric: str


@keeps_hook_settings
def removal_effects(model: Any, clean: Tensor, corrupted: Tensor, metric: Union[str, Metric] = "kl",
                    edges: Optional[list[Edge]] = None) -> dict[Edge, float]:
    """Exact effect of removing ONE edge from the full model: ``M(full without e) - M(full)``.

    Brute force, one patched forward pass per edge through the patching core (``circuits.patching``,
    SPEC 4: the edge carries ``a'_s`` instead of ``a_s``), resample ablation. ``M`` compares with the
    clean logits, as in ACDC.
    """
    fn = resolve(metric)
    clean, corrupted = check_batches(model, clean, corrupted)
    graph = check_declaration(model, runnable_graph(model), clean, corrupted)
    edges = list(graph.edges()) if edges is None else list(edges)
    for e in edges:
        graph.check_edge(e)
    device, _ = model_device_dtype(model)
    with torch.no_grad():
        a_prime = corrupted_activations(model, corrupted, "resample", graph)
        full = model(clean)
        base = float(fn(full, full))
        mask = full_mask(graph, device)
        out: dict[Edge, float] = {}
        for e in edges:
            m = mask[(e.sender, e.receiver)]
            m[e.receiver_index, e.sender_index] = False
            logits, _ = run_with_mask(model, clean, a_prime, mask, graph)
            m[e.receiver_index, e.sender_index] = True
            out[e] = float(fn(logits, full)) - base
    return out
