"""Edge attribution patching: EAP (Syed et al. 2023) and EAP with integrated gradients (Hanna et al. 2024).

The removal of an edge s -> r (SPEC 4: the receiver gets the sender's corrupted activation) shifts the
receiver input by ``c_{s->r} = contribute_{S->R}((a'_S - a_S) restricted to node s)`` sliced to node r.
Attribution patching scores it to first order, summing over the batch (the metric is a batch mean):

    score(s -> r) = sum_{batch, r-slice} c_{s->r} * dM/dz_r

so a positive score means removing the edge raises the metric M (which is minimised): the edge matters.
``dM/dz_r`` is the total derivative at receiver hook r, taken from one backward pass.

Where the gradient is taken (``point``):

* ``"clean"``: the clean run (Syed et al.). Right for metrics that are not stationary at the clean run,
  such as ``logit_diff``.
* ``"corrupted"``: the corrupted run (a first-order estimate of the metric change when the edge is
  restored from the corrupted network). ``metric="kl"`` is KL(clean || run), whose gradient at the clean
  run is exactly zero, so ``point="auto"`` (the default) picks ``"corrupted"`` for ``"kl"`` and ``"clean"``
  for a callable. Pass ``point="corrupted"`` yourself for a callable KL-like metric.

``steps=k`` (EAP-IG) ignores ``point``: it averages the gradient over k points on the straight line from the
corrupted to the clean activations of the graph's *input* hooks (senders that are no node's output, e.g.
``hook_in`` or ``hook_embed``), at the midpoints ``alpha = (i - 1/2) / k``, i = 1..k (a midpoint Riemann sum of
the path integral; Hanna et al. use the same path). Cost, independent of the number of edges: EAP, one forward
pass of the batch the gradient is not taken at and one forward+backward pass of the other (which records its
activations on the way); EAP-IG, two forward passes (clean and corrupted) and k forward+backward passes. The
metric is checked on both runs' logits before any backward pass.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from jaxtyping import Float
from torch import Tensor

from circuits import metrics
from circuits.circuit import Circuit, model_identity
from circuits.graph import Connection, Edge, Graph, Nodes, graph_of, node_mix_axis, nodes_first, runnable_graph
from circuits.patching import check_batches, node_selector, sender_contributions
from circuits.protocol_check import check_declaration
from circuits.recording import check_fired, record
from circuits.hook_settings import keeps_hook_settings
from circuits.validate import (
    check_distinct_pair,
    check_eap_ablation,
    check_metric_values,
    check_model_and_inputs,
    scalar_metric,
)

Metric = Callable[[Tensor, Tensor], Tensor]
EdgeScores = dict[Edge, float]


# The SPEC's KL, shared with ACDC (``circuits.metrics``); kept under this name for attribution users.
kl_metric = metrics.kl()


def resolve_metric(metric: Union[str, Metric], point: str, steps: Optional[int]) -> tuple[Metric, str]:
    """Validate the arguments; return the metric (``circuits.metrics.resolve``) and the gradient point.

    ``point="auto"``: KL against the clean logits is stationary at the clean run (zero gradient), so the
    built-in KL takes its gradient at the corrupted run; any other metric at the clean run.
    """
    resolved = metrics.resolve(metric)
    if point not in ("auto", "clean", "corrupted"):
        raise ValueError(f"point must be 'auto', 'clean' or 'corrupted', got {point!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
    if point == "auto":
        point = "corrupted" if resolved.fn is kl_metric.fn or resolved.name.startswith("kl(") else "clean"
    return resolved, point


def _gradients(model: Any, x: Any, graph: Graph, metric: Callable[[Tensor], Tensor], sources: dict[str, Tensor],
               keep: Sequence[str] = (), before_backward: Optional[Callable[[Tensor], None]] = None
               ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One forward + backward pass: the run's activations at the ``keep`` hooks (detached, as ``record`` gives
    them) and dM/dz at every receiver hook; ``sources`` replace input-hook values;
    ``before_backward(logits)`` runs between the two passes (the metric's checks)."""
    captured: dict[str, Tensor] = {}
    kept: dict[str, Tensor] = {}

    def leaf(name: str):
        def fn(t: Tensor, hook: Any) -> Tensor:
            return sources.get(name, t).detach().clone().requires_grad_(True)
        return fn

    def grab(name: str):
        def fn(t: Tensor, hook: Any) -> Tensor:
            t = t.view_as(t)  # its own autograd node, even if another hook saw the same tensor
            captured[name] = t
            return t
        return fn

    def save(name: str):
        def fn(t: Tensor, hook: Any) -> None:
            kept.setdefault(name, t.detach())
        return fn

    receivers = graph.receivers()
    hooks = ([(h, leaf(h)) for h in _input_hooks(graph)] + [(h, grab(h)) for h in receivers]
             + [(h, save(h)) for h in dict.fromkeys(keep)])
    with torch.enable_grad():
        logits = model.run_with_hooks(x, fwd_hooks=hooks)
        check_fired(model, keep, kept)
        if before_backward is not None:
            before_backward(logits.detach())
        value = metric(logits)
        names = [h for h in receivers if h in captured and captured[h].requires_grad]
        grads = torch.autograd.grad(value, [captured[h] for h in names], allow_unused=True)
    got = {h: g.detach() for h, g in zip(names, grads) if g is not None}
    return kept, {h: got[h] if h in got else torch.zeros_like(captured[h]) for h in receivers if h in captured}


def _input_hooks(graph: Graph) -> list[str]:
    """Senders that are no node's output: where the graph's signal enters."""
    outputs = set(graph.node_output.values())
    return [s for s in graph.senders() if s not in outputs]


def _per_receiver_node(t: Tensor, nodes: Nodes) -> Tensor:
    """``t`` stacked ``(n, batch, *receiver_shape)`` summed to ``(n, receiver nodes)``."""
    if nodes.axis is None:
        return t.reshape(t.shape[0], -1).sum(1, keepdim=True)
    axis = nodes.axis + 1 if nodes.axis >= 0 else nodes.axis
    return t.movedim(axis, 1).reshape(t.shape[0], nodes.count, -1).sum(2)


def connection_scores(conn: Connection, senders: Nodes, receivers: Nodes, delta: Tensor, grad: Tensor,
                      flat: Optional[dict] = None) -> Float[Tensor, "n_receiver n_sender"]:
    """Scores of every edge of one connection: ``score[r, s] = sum c_{s->r} * grad`` (module docstring).

    Uses the dense ``weight`` when both hooks have their nodes on the last axis (one matrix product),
    else ``contribute`` on the sender nodes stacked in chunks (``circuits.patching.sender_contributions``).
    ``flat``: a dict shared by the calls on one set of tensors, keeping their node-major copies (``node_mix``).
    """
    last = (-1, delta.dim() - 1), (-1, grad.dim() - 1)
    if (conn.weight is not None and senders.axis in last[0] and receivers.axis in last[1]
            and delta.shape[:-1] == grad.shape[:-1]):
        G, D = grad.reshape(-1, receivers.count), delta.reshape(-1, senders.count)
        return conn.weight().to(G.dtype) * (G.T @ D)
    if conn.node_mix is not None:
        return _mixed_scores(conn.node_mix(), senders, receivers, delta, grad, flat)
    if receivers.count <= senders.count:
        return _adjoint_scores(conn, senders, receivers, delta, grad)
    every = torch.arange(senders.count, device=delta.device)
    rows = [_per_receiver_node(out * grad, receivers) for _, out in sender_contributions(conn, senders, delta, every)]
    return torch.cat(rows, dim=0).T


def _mixed_scores(M: Tensor, senders: Nodes, receivers: Nodes, delta: Tensor, grad: Tensor,
                  flat: Optional[dict] = None) -> Float[Tensor, "n_receiver n_sender"]:
    """The same scores for a declared ``node_mix`` ``M``: ``score[r, s] = M[r, s] <delta[.., s, ..], grad[.., r, ..]>``
    summed over every axis but the node axis: one matrix product of the node-major flattened tensors."""
    k = node_mix_axis(senders, receivers)
    M = M.to(grad.dtype)
    if k is None:
        return M * (delta * grad).sum()
    return M * (_node_major(grad, receivers, k, flat) @ _node_major(delta, senders, k, flat).T)


def _node_major(t: Tensor, nodes: Nodes, k: int, flat: Optional[dict]) -> Tensor:
    """``t`` as a (nodes, rest) matrix (a copy when the node axis is not first), kept in ``flat`` if given: a
    sender feeds, and a receiver is fed by, many connections."""
    key = (id(t), k)
    if flat is not None and key in flat:
        return flat[key][1]
    m = nodes_first(t, nodes, k)
    m = m.reshape(m.shape[0], -1)
    if flat is not None:
        flat[key] = (t, m)  # ``t`` kept alive with its id
    return m


def _adjoint_scores(conn: Connection, senders: Nodes, receivers: Nodes, delta: Tensor, grad: Tensor
                    ) -> Float[Tensor, "n_receiver n_sender"]:
    """The same scores through the adjoint of ``contribute``: ``score[r, s] = <delta_s, contribute^T(grad_r)>``,
    where ``grad_r`` is the gradient kept on receiver node ``r``. ``contribute`` is linear (SPEC 3; the
    declaration check holds it to that), so its vector-Jacobian product at any point is its adjoint: one
    batched backward pass through ``contribute`` for all receiver nodes, instead of one contribution per
    sender node (on a bridge, per-head broadcasts of the residual stream)."""
    every = torch.arange(receivers.count, device=grad.device)
    kept = grad.unsqueeze(0) * node_selector(receivers, every, grad.dim(), grad.dtype)  # (R, batch, ...)
    x = torch.zeros_like(delta, requires_grad=True)
    with torch.enable_grad():
        out = conn.contribute(x)
        adj = torch.stack([torch.autograd.grad(out, x, grad_outputs=k, retain_graph=True)[0] for k in kept])
    return _per_receiver_node(delta.unsqueeze(0) * adj, senders)


@keeps_hook_settings
def eap(
    model: Any,
    clean: Any,
    corrupted: Any,
    metric: Union[str, Metric] = "kl",
    *,
    steps: Optional[int] = None,
    point: str = "auto",
) -> EdgeScores:
    """Attribution-patching score of every edge of ``model``'s graph (EAP, or EAP-IG with ``steps``).

    Args:
        model: a hooked model declaring ``circuit_graph()``.
        clean, corrupted: input batches paired row by row (same shape).
        metric: ``"kl"`` or ``metric(logits, full_logits) -> scalar`` (minimised); ``full_logits`` are the
            clean run's logits.
        steps: None for EAP; k >= 1 for EAP-IG with k interpolation points.
        point: where plain EAP takes the gradient: ``"auto"``, ``"clean"`` or ``"corrupted"`` (module doc).

    Returns:
        ``{edge: score}`` for every edge in ``graph.edges()`` order; rank by ``abs(score)``.
    """
    check_model_and_inputs(model, clean, corrupted)  # hooks set up, finite weights and inputs
    fn, point = resolve_metric(metric, point, steps)
    fn = scalar_metric(fn, "eap")  # a per-example metric is refused by name, before any backward pass
    clean, corrupted = check_batches(model, clean, corrupted)  # the same checks as ACDC: pairing, NaN, dtype
    graph = check_declaration(model, runnable_graph(model), clean, corrupted)
    check_distinct_pair(clean, corrupted, "eap")
    if steps is None:
        return _plain_eap(model, clean, corrupted, graph, fn, point)
    senders = graph.senders()
    empty_logits, a_bad = record(model, corrupted, senders)
    full_logits, a = record(model, clean, senders)
    check_metric_values(fn, full_logits, empty_logits, "eap")  # one finite number on both ends, before any backward

    def objective(logits: Tensor) -> Tensor:
        return fn(logits, full_logits)

    grads: dict[str, Tensor] = {}
    for i in range(steps):
        alpha = (i + 0.5) / steps
        mix = {h: a_bad[h] + alpha * (a[h] - a_bad[h]) for h in _input_hooks(graph)}
        for h, g in _gradients(model, clean, graph, objective, mix)[1].items():
            grads[h] = grads[h] + g / steps if h in grads else g / steps
    return _scores(graph, a, a_bad, grads)


def _plain_eap(model: Any, clean: Tensor, corrupted: Tensor, graph: Graph, fn: Metric, point: str) -> EdgeScores:
    """EAP in three passes: the batch the gradient is not taken at, recorded; the other one forward and backward,
    its activations recorded on the way (the metric checked on both runs' logits before the backward pass)."""
    senders = graph.senders()
    if point == "clean":
        empty_logits, a_bad = record(model, corrupted, senders)
        a, grads = _gradients(model, clean, graph, lambda logits: fn(logits, logits.detach()), {}, senders,
                                 lambda full: check_metric_values(fn, full, empty_logits, "eap"))
    else:
        full_logits, a = record(model, clean, senders)
        a_bad, grads = _gradients(model, corrupted, graph, lambda logits: fn(logits, full_logits), {}, senders,
                                     lambda empty: check_metric_values(fn, full_logits, empty, "eap"))
    return _scores(graph, a, a_bad, grads)


def _scores(graph: Graph, a: dict, a_bad: dict, grads: dict) -> EdgeScores:
    blocks: dict[tuple[str, str], list[list[float]]] = {}
    flat: dict = {}
    with torch.no_grad():
        deltas = {s: a_bad[s] - a[s] for s in graph.senders()}
        for conn in graph.connections:
            blocks[(conn.sender, conn.receiver)] = connection_scores(
                conn, graph.nodes[conn.sender], graph.nodes[conn.receiver], deltas[conn.sender], grads[conn.receiver],
                flat).double().cpu().tolist()
    return {e: blocks[(e.sender, e.receiver)][e.receiver_index][e.sender_index] for e in graph.edges()}


def _check_top_n(top_n: Any) -> None:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
        raise ValueError(f"top_n must be a non-negative integer, got {top_n!r}")


def circuit_from_scores(
    scores: EdgeScores,
    graph_or_model: Any,
    *,
    top_n: Optional[int] = None,
    threshold: Optional[float] = None,
) -> Circuit:
    """The circuit of the ``top_n`` edges by ``|score|`` (ties: graph order), or of every edge with
    ``|score| >= threshold``. Exactly one of ``top_n`` / ``threshold``; edges must belong to the graph."""
    if (top_n is None) == (threshold is None):
        raise ValueError("give exactly one of top_n= or threshold=")
    if top_n is not None:
        _check_top_n(top_n)
    graph = graph_or_model if isinstance(graph_or_model, Graph) else graph_of(graph_or_model)
    order = {e: i for i, e in enumerate(graph.edges())}
    for e in scores:
        if e not in order:
            graph.check_edge(e)
    ranked = sorted(scores, key=lambda e: (-abs(scores[e]), order[e]))
    if top_n is not None:
        keep = ranked[:top_n]
    else:
        keep = [e for e in ranked if abs(scores[e]) >= threshold]
    ident = {} if isinstance(graph_or_model, Graph) else model_identity(graph_or_model)
    return Circuit(edges=frozenset(keep), n_total_edges=graph.n_edges, effects=dict(scores),
                   settings={"algorithm": "attribution", "top_n": top_n, "threshold": threshold}, model=ident)


def _check_eap_then_acdc_arguments(top_n: Any, threshold: Any, acdc_kwargs: dict[str, Any]) -> None:
    """Everything ACDC would refuse, refused before EAP(-IG) runs: ``top_n``, ``threshold``, unknown or duplicated
    keyword arguments of ``acdc``, its ``engine`` and an ablation EAP does not score."""
    import inspect

    from circuits.acdc.discover import ENGINES, acdc
    from circuits.acdc.loop import check_threshold

    _check_top_n(top_n)
    check_threshold(threshold)
    allowed = set(inspect.signature(acdc).parameters) - {"model", "clean", "corrupted", "threshold", "metric", "edges"}
    unknown = sorted(set(acdc_kwargs) - allowed)
    if unknown:
        raise TypeError(f"eap_then_acdc got keyword arguments {unknown} that acdc does not take (or that "
                        f"eap_then_acdc sets itself); acdc's options: {sorted(allowed)}")
    if acdc_kwargs.get("engine", "fast") not in ENGINES:
        raise ValueError(f"unknown engine {acdc_kwargs['engine']!r}; expected one of {list(ENGINES)}")
    check_eap_ablation(acdc_kwargs.get("ablation", "resample"))


@keeps_hook_settings
def eap_then_acdc(model: Any, clean: Any, corrupted: Any, *, top_n: int, threshold: float,
                  metric: Union[str, Metric] = "kl", steps: Optional[int] = None, **acdc_kwargs: Any) -> Circuit:
    """ACDC restricted to the ``top_n`` edges by EAP(-IG) score: the others start absent (a pre-filter)."""
    _check_eap_then_acdc_arguments(top_n, threshold, acdc_kwargs)
    scores = eap(model, clean, corrupted, metric, steps=steps)
    candidates = circuit_from_scores(scores, model, top_n=top_n).edges
    from circuits import acdc

    return acdc(model, clean, corrupted, threshold=threshold, metric=metric, edges=candidates, **acdc_kwargs)
