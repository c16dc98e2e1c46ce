"""The computational graph that circuit discovery works on, declared by the model.

A model that supports circuit discovery has a method ``circuit_graph() -> Graph``. The graph says,
for every *receiver* hook point, which *sender* hook points feed it and how: the receiver's input is

    z_R = (constant) + sum over connections S -> R of  contribute_{S->R}(a_S)

with each ``contribute`` linear in the sender activation ``a_S``. Hooks are split into *nodes* along
one axis (neurons on the last axis, attention heads on the head axis, or the whole hook as one node).
An edge is (sender hook, sender node) -> (receiver hook, receiver node); its contribution is the
receiver-node slice of ``contribute(a_S restricted to the sender node)``.

Every receiver hook other than the output belongs to a node whose *output* is a sender hook
(``Graph.node_output``): ``blocks.0.hook_pre[j]`` is the input of the neuron whose output is
``blocks.0.hook_post[j]``. ACDC uses it to drop the inputs of nodes that feed nothing and the
outputs of nodes that receive nothing. An input hook with fewer nodes than the output it feeds, each of its
nodes shared by a group of consecutive output nodes (grouped-query attention: key/value inputs per KV group, each
read by the group's query heads), is declared in ``Graph.grouped_output`` instead; ``Graph.feeds`` answers both.

``Graph.activations`` declares what an engine needs to know per node beyond the linear edges: for a
receiver hook R with ``node_output[R] = S``, ``activations[R]`` is the elementwise map with
``a_S = activations[R](z_R)`` (SiLU for a ``HookedMLP`` neuron). An engine that propagates changes
itself (``circuits.acdc.mlp.engine``) reads the nonlinearity from here, never from the model's class; a
receiver without an entry is left to engines that run the model's own forward pass.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from circuits import families
from circuits.hook_settings import keeps_hook_settings

Elementwise = Callable[[Tensor], Tensor]


class Edge(NamedTuple):
    """(sender, sender_index) -> (receiver, receiver_index), named by hook names and node indices.

    Immutable, hashable and ordered field by field; a ``NamedTuple`` because discovery builds one per
    tested edge (tens of thousands per run) and tuples are much cheaper to create than dataclasses.
    """

    sender: str
    sender_index: int
    receiver: str
    receiver_index: int

    def __str__(self) -> str:
        return f"{self.sender}[{self.sender_index}] -> {self.receiver}[{self.receiver_index}]"

    def to_list(self) -> list[Any]:
        return [self.sender, self.sender_index, self.receiver, self.receiver_index]

    @classmethod
    def from_list(cls, item: list[Any]) -> "Edge":
        sender, si, receiver, ri = item
        return cls(str(sender), int(si), str(receiver), int(ri))


@dataclass(frozen=True)
class Nodes:
    """How the activation at ``hook`` (shape ``(batch, ...)``) splits into ``count`` nodes.

    ``axis`` is an axis of the full activation tensor (batch included; negative counts from the end)
    whose index is the node; ``None`` makes the whole activation one node (``count`` must be 1).
    """

    hook: str
    count: int
    axis: Optional[int] = -1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"{self.hook}: a hook needs at least one node, got {self.count}")
        if self.axis is None and self.count != 1:
            raise ValueError(f"{self.hook}: axis=None means one node, got count={self.count}")


@dataclass(frozen=True)
class Connection:
    """Sender hook -> receiver hook, with the linear map giving the sender's share of the receiver input.

    ``contribute(a)`` maps a sender activation ``(batch, *sender_shape)`` to its additive contribution
    ``(batch, *receiver_shape)`` and must be linear (no bias). ``weight``, when given, returns the dense
    ``(n_receiver_nodes, n_sender_nodes)`` matrix with ``contribute(a) == a @ weight().T`` (both sides
    neurons on the last axis): engines may then use matrix products; ``contribute`` stays the definition.
    """

    sender: str
    receiver: str
    contribute: Callable[[Tensor], Tensor]
    weight: Optional[Callable[[], Tensor]] = None
    node_mix: Optional[Callable[[], Tensor]] = None
    """Optional ``(n_receiver_nodes, n_sender_nodes)`` matrix ``M`` when ``contribute`` mixes nodes along the node
    axis and passes every other axis through: ``contribute(a)[..., r, ...] = sum_s M[r, s] a[..., s, ...]``
    (``mix_nodes``). Both hooks then have the same shape apart from the node axis, at the same position in
    both; a one-node hook (``axis=None``) has none and reads as a size-1 node axis there. Residual streams
    are like this: heads summed into the stream (``ones(1, H)``), the stream copied to every head
    (``ones(H, 1)``). Engines may use it for products; ``contribute`` stays the definition (checked)."""


def node_mix_axis(senders: Nodes, receivers: Nodes) -> Optional[int]:
    """The node axis ``node_mix`` acts on: the receiver's, else the sender's (None: both hooks are one node)."""
    return receivers.axis if receivers.axis is not None else senders.axis


def nodes_first(a: Tensor, nodes: Nodes, k: int) -> Tensor:
    """``a`` with ``node_mix``'s axis ``k`` first: ``nodes``' own axis, or a size-1 one for a one-node hook."""
    return (a if nodes.axis is not None else a.unsqueeze(k)).movedim(k, 0)


def mix_nodes(M: Tensor, a: Tensor, senders: Nodes, receivers: Nodes) -> Tensor:
    """``contribute(a)`` as ``Connection.node_mix`` declares it: ``M`` applied along the node axis."""
    k = node_mix_axis(senders, receivers)
    if k is None:
        return M.reshape(()) * a
    y = torch.tensordot(M.to(a.dtype), nodes_first(a, senders, k), dims=([1], [0])).movedim(0, k)
    return y if receivers.axis is not None else y.squeeze(k)


@dataclass(frozen=True)
class Graph:
    """A model's declaration: its nodes, its connections (receivers in forward order), its output hook,
    which node's input hook feeds which output hook (``node_output``), and the elementwise map from a
    node's input to its output where there is one (``activations``, keyed by input hook)."""

    nodes: dict[str, Nodes]
    connections: tuple[Connection, ...]
    output: str
    node_output: dict[str, str] = field(default_factory=dict)
    activations: dict[str, Elementwise] = field(default_factory=dict)
    grouped_output: dict[str, str] = field(default_factory=dict)  # input hook -> output hook, node i feeds a group
    family: Optional[str] = None  # the registered family that built it (``circuits.families``); None if declared

    def __post_init__(self) -> None:
        for c in self.connections:
            for hook in (c.sender, c.receiver):
                if hook not in self.nodes:
                    raise ValueError(f"connection {c.sender} -> {c.receiver} names {hook!r}, which has no Nodes entry")
        if self.output not in self.receivers():
            raise ValueError(f"output hook {self.output!r} receives no connection")
        for receiver, sender in self.node_output.items():
            if receiver not in self.nodes or sender not in self.nodes:
                raise ValueError(f"node_output {receiver!r} -> {sender!r} names an undeclared hook")
            if self.nodes[receiver].count != self.nodes[sender].count:
                raise ValueError(f"node_output {receiver!r} -> {sender!r}: node counts differ")
        for receiver, out in self.grouped_output.items():
            if receiver not in self.nodes or out not in self.nodes or receiver in self.node_output:
                raise ValueError(f"grouped_output {receiver!r} -> {out!r}: an undeclared hook or also in node_output")
            if self.nodes[out].count % self.nodes[receiver].count:
                raise ValueError(f"grouped_output {receiver!r} -> {out!r}: {self.nodes[out].count} output nodes do not "
                                 f"split into groups of the {self.nodes[receiver].count} input nodes")
        for receiver, fn in self.activations.items():
            if receiver not in self.node_output:
                raise ValueError(f"activations[{receiver!r}]: not a node input hook (no node_output entry)")
            if not callable(fn):
                raise TypeError(f"activations[{receiver!r}] must be an elementwise callable, got {type(fn).__name__}")

    def in_order(self, hooks: Sequence[str]) -> "Graph":
        """This graph with its connections in forward order: sorted by the position of their receiver in
        ``hooks`` (the order the hooks fire in a forward pass), then of their sender; the sort is stable."""
        pos = {h: i for i, h in enumerate(hooks)}
        missing = sorted(self.hooks() - set(pos))
        if missing:
            raise ValueError(f"in_order: no position for the declared hooks {missing}")
        conns = sorted(self.connections, key=lambda c: (pos[c.receiver], pos[c.sender]))
        return dataclasses.replace(self, connections=tuple(conns))

    def feeds(self, receiver: str) -> Optional[tuple[str, int]]:
        """``(output hook, group)`` of a node input hook: its node ``i`` feeds output nodes ``i * group ..
        (i + 1) * group - 1`` (``group`` 1 for ``node_output``); None for the output and for inputs of no node."""
        if receiver in self.node_output:
            return self.node_output[receiver], 1
        if receiver in self.grouped_output:
            out = self.grouped_output[receiver]
            return out, self.nodes[out].count // self.nodes[receiver].count
        return None

    def output_hooks(self) -> list[str]:
        """The output hooks of hidden nodes (``node_output`` and ``grouped_output`` values), without repeats."""
        return list(dict.fromkeys([*self.node_output.values(), *self.grouped_output.values()]))

    def signature(self) -> str:
        """A short hash of the graph's structure, stored with every circuit (``model_identity``): the nodes
        (hook, count, axis), the output, ``node_output`` and the set of connections (sender, receiver).
        Neither the weights (the model fingerprint covers them) nor the declaration order enter it."""
        parts = [repr(sorted((h, n.count, n.axis) for h, n in self.nodes.items())), self.output,
                 repr(sorted(self.node_output.items())), repr(sorted({(c.sender, c.receiver) for c in self.connections}))]
        if self.grouped_output:  # only where declared: the signatures of graphs without groups stay as they were
            parts.append(repr(sorted(self.grouped_output.items())))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def receivers(self) -> list[str]:
        """Receiver hooks in the order of first appearance in ``connections`` (forward order once the graph is
        ``in_order`` of the firing order, as every algorithm uses it)."""
        return list(dict.fromkeys(c.receiver for c in self.connections))

    def senders(self) -> list[str]:
        return list(dict.fromkeys(c.sender for c in self.connections))

    def connections_into(self, receiver: str) -> list[Connection]:
        return [c for c in self.connections if c.receiver == receiver]

    def hooks(self) -> set[str]:
        return set(self.nodes)

    def edges(self) -> Iterator[Edge]:
        """Every edge, receivers in forward order, then receiver node, then sender hook, then sender node."""
        for receiver in self.receivers():
            conns = self.connections_into(receiver)
            for r in range(self.nodes[receiver].count):
                for c in conns:
                    for s in range(self.nodes[c.sender].count):
                        yield Edge(c.sender, s, receiver, r)

    @property
    def n_edges(self) -> int:
        return sum(self.nodes[c.sender].count * self.nodes[c.receiver].count for c in self.connections)

    def check_edge(self, edge: Edge) -> None:
        """Raise ``ValueError`` naming the problem if ``edge`` is not an edge of this graph."""
        if not any(c.sender == edge.sender and c.receiver == edge.receiver for c in self.connections):
            raise ValueError(f"edge {edge}: the model has no connection {edge.sender} -> {edge.receiver}")
        for hook, idx in ((edge.sender, edge.sender_index), (edge.receiver, edge.receiver_index)):
            if not 0 <= idx < self.nodes[hook].count:
                raise ValueError(f"edge {edge}: node index {idx} out of range for {hook} ({self.nodes[hook].count} nodes)")


@keeps_hook_settings  # a bridge's gated hooks, turned on to build and check its graph, are turned back
def graph_of(model: Any) -> Graph:
    """The graph a model declares through ``model.circuit_graph()`` (or a registered family builder, e.g. for a
    TransformerLens ``TransformerBridge``: SPEC 7); a clear error if there is none. The model's settings are left as
    they were (``circuits.hook_settings``): the functions that run a graph turn on what it needs themselves."""
    return runnable_graph(model)


def runnable_graph(model: Any) -> Graph:
    """``graph_of(model)`` with the model left ready to run it: a bridge's gated hooks stay on (also under a graph
    the bridge declares itself). For the functions that run the graph next (``acdc``, ``eap``, ...), each restoring
    the user's settings itself on the way out (``keeps_hook_settings``), also on a working copy of the model."""
    declare = getattr(model, "circuit_graph", None)
    family = families.family_of(model) if declare is None else None
    if declare is not None:
        enable_graph_hooks(model)
    elif family is not None:
        declare = lambda: dataclasses.replace(family.build_graph(model), family=family.name)  # noqa: E731
    if declare is None:
        raise TypeError(
            f"{type(model).__name__} declares no circuit graph: give it a method circuit_graph() -> circuits.Graph "
            "(see circuits/graph.py and the README's 'Your own model' section)"
        )
    graph = declare()
    if not isinstance(graph, Graph):
        raise TypeError(f"{type(model).__name__}.circuit_graph() returned {type(graph).__name__}, not circuits.Graph")
    hook_dict = getattr(model, "hook_dict", None)
    if hook_dict is not None:
        missing = sorted(h for h in graph.hooks() if h not in hook_dict)
        if missing:
            raise ValueError(f"{type(model).__name__}'s graph names hook points the model does not have: {missing}")
    return graph


def enable_graph_hooks(model: Any) -> None:
    """Turn on what a registered family's model needs to run a graph (a bridge's gated hooks), for a graph built
    earlier by ``graph_of``, which leaves the model's settings as they were, or declared by the model itself;
    nothing for other models. (Cheaper than ``runnable_graph``: nothing is built.)"""
    family = families.family_of(model)
    if family is not None and family.prepare is not None:
        family.prepare(model)


def mlp_graph(model: Any, activation: Optional[Elementwise] = None) -> Graph:
    """The declaration of a ``HookedMLP``-shaped model: neuron -> neuron edges through ``linears[k]``.

    ``z_{k+1} = b_k + W_k a_k`` (the bias is the constant); ``activation`` (elementwise,
    ``a = activation(z)`` for every hidden layer) goes into ``Graph.activations``.
    """
    widths = model.widths
    L = len(widths) - 1

    def hook(layer: int, role: str) -> str:
        if layer == 0:
            return "hook_in"
        if layer == L:
            return "hook_logits"
        return f"blocks.{layer - 1}.hook_{role}"

    nodes: dict[str, Nodes] = {"hook_in": Nodes("hook_in", widths[0]), "hook_logits": Nodes("hook_logits", widths[-1])}
    node_output: dict[str, str] = {}
    for layer in range(1, L):
        pre, post = hook(layer, "pre"), hook(layer, "post")
        nodes[pre] = Nodes(pre, widths[layer])
        nodes[post] = Nodes(post, widths[layer])
        node_output[pre] = post
    conns = []
    for k in range(L):
        lin = model.linears[k]
        conns.append(
            Connection(
                sender=hook(k, "post"),
                receiver=hook(k + 1, "pre"),
                contribute=lambda a, lin=lin: a @ lin.weight.T,
                weight=lambda lin=lin: lin.weight,
            )
        )
    activations = {pre: activation for pre in node_output} if activation is not None else {}
    return Graph(nodes=nodes, connections=tuple(conns), output="hook_logits", node_output=node_output,
                 activations=activations)

