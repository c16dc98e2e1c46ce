"""``check_graph``: verify a model's graph declaration against the model itself.

For every receiver hook R the declaration promises ``z_R = const + sum_S contribute_{S->R}(a_S)``.
The constant cancels between two inputs, so the check runs the model on ``x1`` and ``x2`` and tests

    z_R(x1) - z_R(x2) == sum_S contribute_{S->R}( a_S(x1) - a_S(x2) )

up to floating-point tolerance. A non-linear edge declared as additive, a missing connection, or a
wrong map all break this equality. It also checks that every declared hook exists and fires, that
each ``Nodes`` entry matches the activation's shape, that ``contribute(0) == 0`` (no bias), and that
a connection's dense ``weight`` agrees with its ``contribute``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from circuits.graph import Graph, graph_of


def _run_cache(model: Any, x: Any, hooks: list[str]) -> dict[str, Tensor]:
    cache: dict[str, Tensor] = {}

    def save(t: Tensor, hook: Any) -> None:
        cache[hook.name] = t.detach()

    with torch.no_grad():
        model.run_with_hooks(x, fwd_hooks=[(h, save) for h in hooks])
    missing = sorted(set(hooks) - set(cache))
    if missing:
        raise ValueError(f"{type(model).__name__}: declared hook points never fired in a forward pass: {missing}")
    return cache


def _check_nodes(graph: Graph, cache: dict[str, Tensor]) -> None:
    for hook, nodes in graph.nodes.items():
        act = cache[hook]
        if nodes.axis is None:
            continue
        if not -act.dim() < nodes.axis < act.dim() or nodes.axis in (0, -act.dim()):
            raise ValueError(f"{hook}: node axis {nodes.axis} is not a non-batch axis of its activation "
                             f"of shape {tuple(act.shape)}")
        if act.shape[nodes.axis] != nodes.count:
            raise ValueError(f"{hook}: declared {nodes.count} nodes on axis {nodes.axis}, but the activation has "
                             f"shape {tuple(act.shape)} ({act.shape[nodes.axis]} along that axis)")


def _second_input(x: Any) -> Any:
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 2:
        raise ValueError("check_graph needs a batched tensor input with at least two examples "
                         "(or pass second_input)")
    return x.roll(1, dims=0)


def check_graph(
    model: Any,
    graph: Optional[Graph] = None,
    example_input: Any = None,
    second_input: Any = None,
    *,
    rtol: float = 1e-6,
) -> dict[str, float]:
    """Check ``graph`` (default ``model.circuit_graph()``) against ``model``; raise ``ValueError`` if it lies.

    Args:
        model: a ``HookedRootModule``.
        graph: the declaration to check (default: the model's own).
        example_input: a batch the model accepts.
        second_input: another batch of the same shape (default: ``example_input`` rolled by one example).
        rtol: allowed error relative to the size of the receiver's input difference (use ~1e-4 in float32).

    Returns:
        receiver hook -> the largest absolute error found (all within tolerance).
    """
    graph = graph_of(model) if graph is None else graph
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a circuits.Graph, got {type(graph).__name__}")
    if example_input is None:
        raise ValueError("check_graph needs an example_input the model accepts")
    missing = sorted(h for h in graph.hooks() if h not in model.hook_dict)
    if missing:
        raise ValueError(f"{type(model).__name__} has no hook points named {missing} (declared in its graph)")
    x2 = _second_input(example_input) if second_input is None else second_input
    if isinstance(x2, Tensor) and isinstance(example_input, Tensor) and x2.shape != example_input.shape:
        raise ValueError(f"second_input has shape {tuple(x2.shape)}, example_input {tuple(example_input.shape)}: "
                         "the batches must match")
    hooks = sorted(graph.hooks())
    c1, c2 = _run_cache(model, example_input, hooks), _run_cache(model, x2, hooks)
    _check_nodes(graph, c1)
    errors: dict[str, float] = {}
    with torch.no_grad():
        for receiver in graph.receivers():
            errors[receiver] = _check_receiver(graph, receiver, c1, c2, rtol)
    return errors


def _check_receiver(graph: Graph, receiver: str, c1: dict, c2: dict, rtol: float) -> float:
    target = c1[receiver] - c2[receiver]
    total = torch.zeros_like(target)
    scale = target.abs().max()
    for conn in graph.connections_into(receiver):
        delta = c1[conn.sender] - c2[conn.sender]
        out = conn.contribute(delta)
        if out.shape != target.shape:
            raise ValueError(f"{conn.sender} -> {receiver}: contribute returns shape {tuple(out.shape)}, "
                             f"the receiver's input has shape {tuple(target.shape)}")
        zero = conn.contribute(torch.zeros_like(delta))
        if zero.abs().max() > 0:
            raise ValueError(f"{conn.sender} -> {receiver}: contribute(0) != 0; contributions must be linear "
                             "(put constants such as biases outside the declaration)")
        if conn.weight is not None:
            W = conn.weight()
            if tuple(W.shape) != (target.shape[-1], delta.shape[-1]):
                raise ValueError(f"{conn.sender} -> {receiver}: weight() has shape {tuple(W.shape)}, expected "
                                 f"{(target.shape[-1], delta.shape[-1])} (receiver nodes, sender nodes)")
            dense = delta.reshape(-1, delta.shape[-1]) @ W.T
            if not torch.allclose(
                dense.reshape(out.shape), out, rtol=rtol, atol=rtol * (out.abs().max() + 1e-30)
            ):
                raise ValueError(f"{conn.sender} -> {receiver}: the declared weight() disagrees with contribute")
        total = total + out
        scale = torch.maximum(scale, out.abs().max())
    err = (total - target).abs().max()
    if err > rtol * max(float(scale), 1e-30) + 1e-300:
        raise ValueError(
            f"{receiver}: the declared contributions do not sum to the receiver's input (max error {float(err):.3g} "
            f"vs scale {float(scale):.3g}): a non-linear edge declared as additive, or a missing/wrong connection"
        )
    return float(err)
