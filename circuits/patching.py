"""Edge patching through the model's hook points: run a circuit.

A clean batch ``x`` is paired row by row with a corrupted batch ``x'``. The corrupted batch runs
once through the full model (sender activations ``a'``). The circuit ``C`` then runs on ``x`` with
every edge NOT in ``C`` carrying the sender's corrupted activation instead of its own:

    z_R = (constant) + sum_{S->R} contribute_{S->R}(a_S)  +  sum_{(s->r) not in C} [contribute((a'_S - a_S)|_s)]|_r

which for a neuron -> neuron MLP is the SPEC formula
``z_{k+1}[j] = b[j] + sum_i W[j,i] * (a_k[i] if (i->j) in C else a'_k[i])``. ``a_S`` is the activation
of the *current* run (already patched upstream). ``ablation="zero"`` uses ``a' = 0``;
``ablation="mean"`` the mean activation over the corrupted batch, broadcast over the batch.

The low-level form works on an *edge mask*: for each connection ``(sender, receiver)`` a boolean
tensor ``(n_receiver_nodes, n_sender_nodes)``, True where the edge is in the circuit.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from circuits.circuit import Circuit
from circuits.graph import Connection, Edge, Graph, Nodes, runnable_graph
from circuits.recording import record
from circuits.validate import check_model_and_inputs
from circuits import families
from circuits.hook_settings import keeps_hook_settings

ABLATIONS = ("resample", "zero", "mean")
EdgeMask = dict[tuple[str, str], Bool[Tensor, "n_recv n_send"]]

_CHUNK_ELEMENTS = 1 << 24  # bound on the stacked per-sender-node tensor of the generic path


# ---------------------------------------------------------------------------- validation
def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first floating parameter (CPU float32 if none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def check_eval_mode(model: Any) -> None:
    """A model with an active dropout layer (training mode) gives two different runs for one input."""
    if not isinstance(model, torch.nn.Module):
        return
    for name, module in model.named_modules():
        if module.training and isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            raise ValueError(f"{type(model).__name__} is in training mode with dropout on ({name or 'model'}, "
                             f"p={module.p}): call model.eval() before circuit discovery")


def check_batches(model: torch.nn.Module, clean: Any, corrupted: Any) -> tuple[Tensor, Tensor]:
    """Validate a clean/corrupted pair and move both to the model's device and dtype.

    Raises ``TypeError`` for non-tensors and ``ValueError`` for mismatched shapes or batch sizes,
    empty batches, complex or boolean inputs, or NaN. Integer inputs (token ids) keep their dtype;
    floating inputs take the model's dtype. A model in training mode with dropout on, and on a
    a registered family's own refusals (a TransformerLens bridge: padding or non-token inputs;
    ``circuits.families``) come too.
    """
    check_eval_mode(model)
    family = families.family_of(model)
    if family is not None:
        family.check_inputs(model, clean, corrupted)
    for name, x in (("clean", clean), ("corrupted", corrupted)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty batch, got shape {tuple(x.shape)}")
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must be a real floating-point or integer (token) tensor, got {x.dtype}")
        if x.is_floating_point() and torch.isnan(x).any():
            raise ValueError(f"{name} contains NaN")
    if clean.shape[0] != corrupted.shape[0]:
        raise ValueError(
            f"clean and corrupted batches must be paired row by row: batch sizes {clean.shape[0]} vs {corrupted.shape[0]}"
        )
    if clean.shape != corrupted.shape:
        tokens = "" if clean.is_floating_point() or clean.dim() != 2 else (
            "; patching pairs them position by position, so every clean and corrupted prompt needs the same number "
            "of tokens, without padding (docs/transformers.md, 'Prompts of equal length')")
        raise ValueError(f"clean and corrupted shapes differ: {tuple(clean.shape)} vs {tuple(corrupted.shape)}{tokens}")
    if clean.is_floating_point() != corrupted.is_floating_point():
        raise ValueError(f"clean ({clean.dtype}) and corrupted ({corrupted.dtype}) must both be floating or both integer")
    device, dtype = model_device_dtype(model)
    if not clean.is_floating_point():
        return clean.to(device=device), corrupted.to(device=device)
    return clean.to(device=device, dtype=dtype), corrupted.to(device=device, dtype=dtype)


def check_ablation(ablation: Any) -> str:
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; expected one of {list(ABLATIONS)}")
    return ablation


# ---------------------------------------------------------------------------- masks
def full_mask(graph: Graph, device: Optional[torch.device] = None) -> EdgeMask:
    """Every edge present."""
    return {
        (c.sender, c.receiver): torch.ones(graph.nodes[c.receiver].count, graph.nodes[c.sender].count, dtype=torch.bool, device=device)
        for c in graph.connections
    }


def mask_of_edges(graph: Graph, edges: Any, device: Optional[torch.device] = None) -> EdgeMask:
    """The edge mask with exactly ``edges`` present (each checked against the graph)."""
    mask = {k: torch.zeros_like(v) for k, v in full_mask(graph, device).items()}
    for e in edges:
        graph.check_edge(e)
        mask[(e.sender, e.receiver)][e.receiver_index, e.sender_index] = True
    return mask


def edges_of_mask(mask: EdgeMask) -> frozenset[Edge]:
    """The present edges of a mask."""
    out = []
    for (sender, receiver), m in mask.items():
        for r, s in torch.nonzero(m).tolist():
            out.append(Edge(sender, s, receiver, r))
    return frozenset(out)


# ---------------------------------------------------------------------------- node selection
def _node_axis(nodes: Nodes, ndim: int) -> Optional[int]:
    if nodes.axis is None:
        return None
    return nodes.axis if nodes.axis >= 0 else ndim + nodes.axis


def node_selector(nodes: Nodes, index: Int[Tensor, " n"], ndim: int, dtype: torch.dtype = torch.bool) -> Tensor:
    """One-hot selectors, one per entry of ``index``: shape ``(n, 1, ..., count, ..., 1)`` (``count`` at the node
    axis + 1) broadcasting against ``n`` stacked activations of ``ndim`` dims; all ones if the hook is one node."""
    n = len(index)
    shape = [n] + [1] * ndim
    if nodes.axis is None:
        return torch.ones(shape, dtype=dtype, device=index.device)
    onehot = torch.zeros(n, nodes.count, dtype=dtype, device=index.device)
    onehot[torch.arange(n, device=index.device), index] = 1
    shape[_node_axis(nodes, ndim) + 1] = nodes.count
    return onehot.view(shape)


def node_slice(delta: Float[Tensor, "batch ..."], nodes: Nodes, index: int) -> Float[Tensor, "batch ..."]:
    """``delta`` with every node but ``index`` zeroed (along ``nodes.axis``; the whole tensor if one node)."""
    sel = node_selector(nodes, torch.tensor([index], device=delta.device), delta.dim(), delta.dtype)
    return delta * sel[0]


def sender_contributions(conn: Connection, nodes_s: Nodes, delta: Float[Tensor, "batch ..."], senders: Int[Tensor, " n"]
                         ) -> Iterator[tuple[Int[Tensor, " chunk"], Float[Tensor, "chunk batch ..."]]]:
    """For chunks of the sender nodes ``senders``: ``(chunk, contribute(delta restricted to each node))``, the
    contributions stacked on a new leading axis, ``(len(chunk), batch, *receiver_shape)``, one call per chunk."""
    per = max(1, _CHUNK_ELEMENTS // max(1, delta.numel()))
    for start in range(0, len(senders), per):
        sel = senders[start : start + per]
        stacked = delta.unsqueeze(0) * node_selector(nodes_s, sel, delta.dim(), delta.dtype)
        n, b = stacked.shape[0], delta.shape[0]
        out = conn.contribute(stacked.reshape(n * b, *delta.shape[1:]))
        yield sel, out.reshape(n, b, *out.shape[1:])


@torch.no_grad()
def corrupted_activations(
    model: Any, corrupted: Float[Tensor, "batch ..."], ablation: str = "resample", graph: Optional[Graph] = None
) -> dict[str, Tensor]:
    """``a'`` for every sender hook: the corrupted run's activation, zeros, or its batch mean (broadcast)."""
    graph = graph if graph is not None else runnable_graph(model)
    _, store = record(model, corrupted, graph.senders())
    if ablation == "zero":
        return {h: torch.zeros_like(a) for h, a in store.items()}
    if ablation == "mean":
        return {h: a.mean(dim=0, keepdim=True).expand_as(a).clone() for h, a in store.items()}
    return {h: a.clone() for h, a in store.items()}


def _generic_contribution(conn: Connection, nodes_s: Nodes, nodes_r: Nodes, delta: Tensor, absent: Tensor) -> Tensor:
    """``sum_s [contribute(delta|_s)]|_{r absent}``: per-sender-node calls of ``contribute``, batched."""
    total: Optional[Tensor] = None
    for sel, out in sender_contributions(conn, nodes_s, delta, torch.nonzero(absent.any(dim=0)).flatten()):
        coef = absent[:, sel].T.to(out.dtype)  # (n_sel, n_recv): 1 where the edge s -> r is absent
        r_axis = _node_axis(nodes_r, out.dim() - 1)
        cshape = [len(sel)] + [1] * (out.dim() - 1)
        if r_axis is not None:
            cshape[r_axis + 1] = nodes_r.count
        part = (out * coef.reshape(cshape)).sum(dim=0)
        total = part if total is None else total + part
    return total if total is not None else torch.zeros((), dtype=delta.dtype, device=delta.device)


def patch_term(conn: Connection, graph: Graph, delta: Tensor, present: Tensor) -> Optional[Tensor]:
    """What the absent edges of ``conn`` add to the receiver: ``delta @ (W * absent).T`` or the generic sum."""
    absent = ~present
    if not bool(absent.any()):
        return None
    if conn.weight is not None:
        w = conn.weight()
        return delta @ (w * absent.to(w.dtype)).T
    return _generic_contribution(conn, graph.nodes[conn.sender], graph.nodes[conn.receiver], delta, absent)


def _patching_hooks(graph: Graph, a_prime: dict[str, Tensor], mask: EdgeMask, cache: dict[str, Tensor], keep: set[str]):
    senders = set(graph.senders())
    receivers = set(graph.receivers())
    current: dict[str, Tensor] = {}

    def fn(act: Tensor, name: str) -> Tensor:
        if name in receivers:
            for conn in graph.connections_into(name):
                if conn.sender not in current:
                    raise ValueError(f"sender hook {conn.sender} did not fire before its receiver {name}")
                term = patch_term(conn, graph, a_prime[conn.sender] - current[conn.sender], mask[(conn.sender, conn.receiver)])
                if term is not None:
                    act = act + term
        if name in senders:
            current[name] = act
        if name in keep:
            cache[name] = act
        return act

    return [(h, lambda act, hook, h=h: fn(act, h)) for h in sorted(senders | receivers | keep)]


@torch.no_grad()
def run_with_mask(
    model: Any,
    clean: Float[Tensor, "batch ..."],
    a_prime: dict[str, Tensor],
    mask: EdgeMask,
    graph: Optional[Graph] = None,
    cache_hooks: tuple[str, ...] = (),
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``clean`` with the edges absent in ``mask`` carrying ``a_prime``; returns (logits, cache).

    No validation (the engines call this in their loops); the hooks are removed on exit.
    """
    graph = graph if graph is not None else runnable_graph(model)
    cache: dict[str, Tensor] = {}
    hooks = _patching_hooks(graph, a_prime, mask, cache, set(cache_hooks))
    with model.hooks(fwd_hooks=hooks):
        logits = model(clean)
    return logits, cache


@keeps_hook_settings
def run_circuit(
    model: Any,
    circuit: Circuit,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    ablation: str = "resample",
    *,
    check_model: bool = True,
) -> Float[Tensor, "batch d_out"]:
    """The circuit's logits on ``clean``: edges outside ``circuit`` carry the corrupted activation ``a'``.

    ``z_{k+1}[j] = b[j] + sum_i W[j,i] * (a_k[i] if (i->j) in C else a'_k[i])`` (module docstring for
    the general graph form). ``ablation``: "resample" (``a'`` from ``corrupted``), "zero" or "mean".
    A circuit found on another model (fingerprint or graph, ``Circuit.check_model``) is refused unless
    ``check_model=False``, for a deliberate transfer such as a fine-tuned model.
    """
    check_model_and_inputs(model, clean, corrupted)  # hooks set up, finite weights and inputs
    check_ablation(ablation)
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a circuits.Circuit, got {type(circuit).__name__}")
    graph = runnable_graph(model)
    circuit.check_model(model, graph, check_model=check_model)
    clean, corrupted = check_batches(model, clean, corrupted)
    device, _ = model_device_dtype(model)
    a_prime = corrupted_activations(model, corrupted, ablation, graph)
    logits, _ = run_with_mask(model, clean, a_prime, mask_of_edges(graph, circuit.edges, device), graph)
    return logits
