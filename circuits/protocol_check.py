"""Verify a model's graph declaration against the model itself: ``check_graph`` and ``check_declaration``.

For every receiver hook R the declaration promises ``z_R = const + sum_S contribute_{S->R}(a_S)``.
The constant cancels between two inputs, so the check runs the model on ``x1`` and ``x2`` and tests

    z_R(x1) - z_R(x2) == sum_S contribute_{S->R}( a_S(x1) - a_S(x2) )

up to floating-point tolerance (a missing or wrong connection breaks it), and for each connection

    contribute(0) == 0                                            (no bias inside ``contribute``)
    contribute(a_S(x1)) - contribute(a_S(x2)) == contribute(a_S(x1) - a_S(x2))   (no non-linear term)
    activations[R](z_R) == a_{node_output[R]}                     (the declared nonlinearity, per input)

It also checks that every declared hook exists and fires, that each ``Nodes`` entry matches the
activation's shape, that a connection's dense ``weight`` agrees with its ``contribute``, and that every
sender fires before its receiver. Every error names the receiver hook. The forward order the engines use
is the order in which the hooks fire in the forward pass, never the order of the declaration
(``check_declaration`` returns the graph in that order; ``circuits.acdc``, ``eap``, ``node_patching`` call it
on a few rows of the clean and corrupted batches before any discovery work).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.graph import Connection, Graph, Nodes, enable_graph_hooks, graph_of, mix_nodes, runnable_graph
from circuits.hook_settings import keeps_hook_settings
from circuits import declaration_cache, families
from circuits.recording import record

DECLARATION_ROWS = 4  # rows of the clean/corrupted batches the pre-discovery check runs on


def default_rtol(dtype: torch.dtype) -> float:
    """Tolerance relative to the size of the terms compared: 1e-6 in float64, 1e-3 in float32, 5e-2 in
    float16 and 1e-1 in bfloat16 (sums of hundreds of rounded products; a real lie is O(1))."""
    return {torch.float64: 1e-6, torch.float32: 1e-3, torch.float16: 5e-2}.get(dtype, 1e-1)


def _close(a: Tensor, b: Tensor, scale: Tensor, rtol: float) -> tuple[bool, float]:
    err = (a - b).abs().max() if a.numel() else torch.zeros(())
    return bool(err <= rtol * max(float(scale), 1e-30) + 1e-300), float(err)


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


def _check_order(graph: Graph, order: list[str]) -> None:
    """Every sender fires before each of its receivers (patching needs the sender's value first)."""
    pos = {h: i for i, h in enumerate(order)}
    for c in graph.connections:
        if pos[c.sender] >= pos[c.receiver]:
            raise ValueError(f"{c.receiver}: its declared sender {c.sender} fires after it in the forward pass "
                             "(a receiver can only read hooks that fired before it)")


def _check_connection(conn: Connection, a1: Tensor, a2: Tensor, target: Tensor, rtol: float,
                      nodes: tuple[Nodes, Nodes]) -> Tensor:
    """``contribute(a1 - a2)`` after checking its shape, ``contribute(0) == 0``, linearity, ``weight`` and
    ``node_mix`` (``nodes``: the sender's and the receiver's)."""
    where = f"{conn.receiver}: connection {conn.sender} -> {conn.receiver}"
    delta = a1 - a2
    out = conn.contribute(delta)
    if out.shape != target.shape:
        raise ValueError(f"{where}: contribute returns shape {tuple(out.shape)}, the receiver's input has shape "
                         f"{tuple(target.shape)}")
    if conn.contribute(torch.zeros_like(delta)).abs().max() > 0:
        raise ValueError(f"{where}: contribute(0) != 0, a bias or constant inside contribute; contributions must be "
                         "linear (put constants such as biases outside the declaration)")
    c1, c2 = conn.contribute(a1), conn.contribute(a2)
    ok, err = _close(c1 - c2, out, torch.maximum(c1.abs().max(), c2.abs().max()), rtol)
    if not ok:
        raise ValueError(f"{where}: contribute is not linear (contribute(a1) - contribute(a2) differs from "
                         f"contribute(a1 - a2) by {err:.3g}): a non-linear term inside contribute")
    if conn.weight is not None:
        W = conn.weight()
        if tuple(W.shape) != (target.shape[-1], delta.shape[-1]):
            raise ValueError(f"{where}: weight() has shape {tuple(W.shape)}, expected "
                             f"{(target.shape[-1], delta.shape[-1])} (receiver nodes, sender nodes)")
        dense = (delta.reshape(-1, delta.shape[-1]) @ W.T).reshape(out.shape)
        if not _close(dense, out, out.abs().max(), rtol)[0]:
            raise ValueError(f"{where}: the declared weight() disagrees with contribute")
    if conn.node_mix is not None:
        M, want = conn.node_mix(), (nodes[1].count, nodes[0].count)
        if tuple(M.shape) != want:
            raise ValueError(f"{where}: node_mix() has shape {tuple(M.shape)}, expected {want} (receiver nodes, "
                             "sender nodes)")
        try:
            mixed = mix_nodes(M, delta, *nodes)
        except RuntimeError as err:
            raise ValueError(f"{where}: node_mix() cannot apply along the node axis ({err})") from err
        if mixed.shape != out.shape or not _close(mixed, out, out.abs().max(), rtol)[0]:
            raise ValueError(f"{where}: the declared node_mix() disagrees with contribute")
    return out


def _check_receiver(graph: Graph, receiver: str, c1: dict, c2: dict, rtol: float) -> float:
    target = c1[receiver] - c2[receiver]
    total = torch.zeros_like(target)
    scale = target.abs().max()
    for conn in graph.connections_into(receiver):
        out = _check_connection(conn, c1[conn.sender], c2[conn.sender], target, rtol,
                                (graph.nodes[conn.sender], graph.nodes[conn.receiver]))
        total = total + out
        scale = torch.maximum(scale, out.abs().max())
    ok, err = _close(total, target, scale, rtol)
    if not ok:
        raise ValueError(
            f"{receiver}: the declared contributions do not sum to the receiver's input (max error {err:.3g} "
            f"vs scale {float(scale):.3g}): a missing or wrong connection, or a non-linear edge declared as additive"
        )
    return err


def _check_activations(graph: Graph, caches: tuple[dict, ...], rtol: float) -> None:
    for receiver, act in graph.activations.items():
        out = graph.node_output[receiver]
        for cache in caches:
            want = cache[out]
            ok, err = _close(act(cache[receiver]), want, want.abs().max(), rtol)
            if not ok:
                raise ValueError(f"{receiver}: the declared activation does not map it to {out} (max error {err:.3g}): "
                                 "the model's forward computes another nonlinearity than Graph.activations says")


def _verify(model: Any, graph: Graph, x1: Any, x2: Any, rtol: float) -> tuple[dict[str, float], list[str]]:
    """All checks on the pair (x1, x2); returns (max error per receiver, hooks in firing order)."""
    hook_dict = model.hook_dict  # a property rebuilt on every access on some models (TransformerBridge)
    missing = sorted(h for h in graph.hooks() if h not in hook_dict)
    if missing:
        raise ValueError(f"{type(model).__name__} has no hook points named {missing} (declared in its graph)")
    hooks = sorted(graph.hooks())
    (_, c1), (_, c2) = record(model, x1, hooks), record(model, x2, hooks)
    order = list(c1)
    _check_nodes(graph, c1)
    _check_order(graph, order)
    errors: dict[str, float] = {}
    with torch.no_grad():
        for receiver in graph.in_order(order).receivers():
            errors[receiver] = _check_receiver(graph, receiver, c1, c2, rtol)
        _check_activations(graph, (c1, c2), rtol)
    return errors, order


def _second_input(x: Any) -> Any:
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 2:
        raise ValueError("check_graph needs a batched tensor input with at least two examples "
                         "(or pass second_input)")
    return x.roll(1, dims=0)


@keeps_hook_settings
def check_graph(
    model: Any,
    graph: Optional[Graph] = None,
    example_input: Any = None,
    second_input: Any = None,
    *,
    rtol: Optional[float] = None,
) -> dict[str, float]:
    """Check ``graph`` (default ``model.circuit_graph()``) against ``model``; raise ``ValueError`` if it lies.

    Args:
        model: a ``HookedRootModule``.
        graph: the declaration to check (default: the model's own).
        example_input: a batch the model accepts.
        second_input: another batch of the same shape (default: ``example_input`` rolled by one example).
        rtol: allowed error relative to the size of the terms compared (default ``default_rtol`` of the
            model's dtype: 1e-6 in float64, 1e-3 in float32).

    Returns:
        receiver hook -> the largest absolute error found (all within tolerance), in firing order.
    """
    if graph is None:
        graph = runnable_graph(model)
    elif isinstance(graph, Graph):
        enable_graph_hooks(model)  # a graph built earlier: graph_of left the model's settings as they were
    else:
        raise TypeError(f"graph must be a circuits.Graph, got {type(graph).__name__}")
    if example_input is None:
        raise ValueError("check_graph needs an example_input the model accepts")
    x2 = _second_input(example_input) if second_input is None else second_input
    if isinstance(x2, Tensor) and isinstance(example_input, Tensor) and x2.shape != example_input.shape:
        raise ValueError(f"second_input has shape {tuple(x2.shape)}, example_input {tuple(example_input.shape)}: "
                         "the batches must match")
    return _verify(model, graph, example_input, x2, _rtol(model, rtol))[0]


def check_declaration(model: Any, graph: Graph, clean: Float[Tensor, "batch ..."],
                      corrupted: Float[Tensor, "batch ..."], *, rows: int = DECLARATION_ROWS,
                      rtol: Optional[float] = None, reuse: bool = True) -> Graph:
    """The pre-discovery check: every test of ``check_graph`` on the first ``rows`` clean/corrupted pairs
    (two forward passes of ``rows`` examples). Returns ``graph`` in forward order: receivers in the order
    their hooks fired, the senders of each receiver likewise (``Graph.in_order``).

    ``reuse``: skip the check when the same model, unchanged, passed it with the same declaration, rows and
    tolerance before (``circuits.declaration_cache`` lists what "unchanged" covers); False always checks."""
    x1, x2, tol = clean[:rows], corrupted[:rows], _rtol(model, rtol)
    key = declaration_cache.declaration_key(model, graph, x1, x2, tol) if reuse else None
    order = declaration_cache.passed(model, key)
    if order is not None:
        return graph.in_order(order)
    try:
        errors, order = _verify(model, graph, x1, x2, tol)
    except ValueError as err:
        family = families.named(graph.family)
        if family is None or family.explain is None:
            raise
        raise ValueError(f"{err} [{family.explain(model)}]") from err
    declaration_cache.remember(model, key, order)
    return graph.in_order(order)


def _rtol(model: Any, rtol: Optional[float]) -> float:
    if rtol is not None:
        return float(rtol)
    dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
    return default_rtol(dtypes[0] if dtypes else torch.get_default_dtype())
