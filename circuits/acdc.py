"""ACDC (Conmy et al. 2023, Algorithm 1) over any model that declares its graph, exactly as SPEC 4:

    C = all edges (or the given subset); current = metric(C)
    for receiver hooks from the output backwards; receiver nodes j ascending:
        if j is hidden and its node has no outgoing edge left in C: drop all its incoming edges; continue
        for the sender hooks of j in connection order; sender nodes i ascending:
            new = metric(C without i->j)
            if new - current < threshold: C = C without i->j; current = new
    finally drop edges out of hidden nodes with no incoming edge left (forward order, so it cascades).

``Circuit.effects[e]`` is ``new - current`` when ``e`` was tested. ``engine="reference"`` runs one
patched forward pass per tested edge through the hook points; ``engine="fast"`` (``circuits.fast``)
reaches the same decisions on MLP-shaped graphs and falls back to the reference on any other graph.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterable, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.circuit import Circuit, model_identity
from circuits.graph import Edge, Graph, graph_of
from circuits.metrics import Metric, resolve
from circuits.patching import (
    EdgeMask,
    check_ablation,
    check_batches,
    corrupted_activations,
    edges_of_mask,
    full_mask,
    mask_of_edges,
    model_device_dtype,
    run_with_mask,
)

ENGINES = ("fast", "reference")


def working_copy(model: Any, dtype: Optional[torch.dtype]) -> Any:
    """``model`` itself if it already computes in ``dtype`` (or ``dtype`` is None), else an upcast deep copy."""
    if dtype is None:
        return model
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
    if model_device_dtype(model)[1] == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


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


def _receiver_order(graph: Graph, progress: bool) -> Iterable[str]:
    order = list(reversed(graph.receivers()))
    if progress:
        from tqdm.auto import tqdm

        return tqdm(order, desc="acdc receivers")
    return order


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


def reference_engine(p: Problem) -> tuple[EdgeMask, dict[Edge, float], int]:
    """One patched forward pass per tested edge, straight from the SPEC loop (ties: ``unchanged_edges``)."""
    graph, mask = p.graph, p.mask
    current = p.score(mask)
    effects: dict[Edge, float] = {}
    for receiver in _receiver_order(graph, p.progress):
        out = graph.node_output.get(receiver)
        conns = graph.connections_into(receiver)
        unchanged = unchanged_edges(p, receiver)
        for r in range(graph.nodes[receiver].count):
            if receiver != graph.output and out is not None and not has_outgoing(graph, mask, out, r):
                drop_incoming(graph, mask, receiver, r)
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


def acdc(
    model: Any,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    *,
    threshold: float,
    metric: Any = "kl",
    ablation: str = "resample",
    engine: str = "fast",
    edges: Optional[Iterable[Edge]] = None,
    progress: bool = False,
    dtype: Optional[torch.dtype] = torch.float64,
) -> Circuit:
    """Discover a circuit with ACDC (module docstring); returns a ``Circuit`` with effects and settings.

    Args:
        threshold: remove an edge when ``metric(C without e) - metric(C) < threshold`` (>= 0).
        metric: "kl", a ``circuits.metrics.Metric`` (e.g. ``logit_diff(...)``) or ``(logits, full) -> scalar``.
        ablation: "resample", "zero" or "mean" (``circuits.patching``).
        engine: "fast" (exact, MLP graphs; other graphs use the reference) or "reference".
        edges: optional subset; edges outside it start absent and are never tested.
        dtype: the floating dtype discovery runs in (default float64): a float32 model is scored on an
            upcast copy (the user's model is untouched; the circuit records the model's own fingerprint),
            so float32 rounding (~1e-7 on the KL) cannot decide a near-tie and both engines give the same
            circuit. ``None``: the model's own dtype (faster, float32 near-ties re-scored, see fast.py).
    """
    threshold = check_threshold(threshold)
    check_ablation(ablation)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {list(ENGINES)}")
    metric_obj = resolve(metric)
    user_model, model = model, working_copy(model, dtype)
    graph = graph_of(model)
    clean, corrupted = check_batches(model, clean, corrupted)
    device, used_dtype = model_device_dtype(model)
    start_mask = full_mask(graph, device) if edges is None else mask_of_edges(graph, list(edges), device)

    t0 = time.perf_counter()
    a_prime = corrupted_activations(model, corrupted, ablation, graph)
    problem = Problem(model, graph, clean, a_prime, metric_obj, threshold, start_mask, progress)
    used = "reference"
    if engine == "fast":
        from circuits import fast

        if fast.supports(model, graph):
            used = "fast"
    with torch.no_grad():  # discovery needs no gradients: no autograd bookkeeping on any op, either engine
        if used == "fast":
            mask, effects, n_tested = fast.fast_engine(problem)
        else:
            mask, effects, n_tested = reference_engine(problem)
    seconds = time.perf_counter() - t0
    settings = {"algorithm": "acdc", "threshold": threshold, "metric": metric_obj.name, "ablation": ablation,
                "engine": engine, "engine_used": used, "n_tested": n_tested, "restricted": edges is not None,
                "dtype": str(used_dtype).replace("torch.", "")}
    if hasattr(problem, "flops"):
        settings["downstream_flops"] = int(problem.flops)
        settings["verify_passes"] = int(problem.passes)
        settings["ties_rescored"] = int(problem.rescored)
    return Circuit(edges=edges_of_mask(mask), n_total_edges=graph.n_edges, seconds=seconds, effects=effects,
                   settings=settings, model=model_identity(user_model))
