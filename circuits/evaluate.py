"""Measures of a discovered circuit (SPEC 5), computed against the full model on the clean batch.

- ``logit_gap``: ``mean_{b,c} |logits_full[b,c] - logits_circuit[b,c]|``
- ``kl``: ``KL(softmax(full) || softmax(circuit))`` averaged over the batch
- ``logit_diff_full`` / ``logit_diff_circuit`` / ``logit_diff_ablated``: mean task logit difference
  ``LD(logits) -> (batch,)`` (default ``logits[clean_label] - logits[corrupt_label]``) of the full model,
  the circuit, and the empty circuit under the same ablation (for resample: the corrupted run)
- ``logit_diff_recovery`` (SPEC 5, IOI / ACDC "logit difference recovered"):
  ``(LD_circuit - LD_ablated) / (LD_full - LD_ablated)``: full circuit 1, empty circuit 0 (NaN if LD_full == LD_ablated)
- ``accuracy`` (circuit argmax == clean label) and ``full_accuracy``
- ``n_edges``, ``edge_sparsity = 1 - n_edges / n_total_edges``
- on sequence logits ``(batch, pos, vocab)`` kl, the default logit difference and accuracy read the last
  position; logit_gap averages over every position
- ``n_nodes``, ``node_sparsity = 1 - n_nodes / n_hidden``: a hidden node is in the circuit when an
  edge of the circuit touches it (as receiver input or as sender output)

A circuit found on another model (fingerprint or graph) is refused before any work unless
``check_model=False`` (``Circuit.check_model``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.circuit import Circuit
from circuits.graph import Graph, runnable_graph
from circuits.metrics import kl
from circuits.patching import check_batches, run_circuit
from circuits.validate import check_labels_range, check_model_and_inputs, check_scalar_labels
from circuits.hook_settings import keeps_hook_settings


def hidden_nodes(graph: Graph, circuit: Circuit) -> tuple[int, int]:
    """(hidden nodes the circuit touches, hidden nodes of the graph).

    A hidden node is named by its output hook (several input hooks may map to it, e.g. q/k/v inputs).
    """
    outs = set(graph.output_hooks())
    total = sum(graph.nodes[o].count for o in outs)
    touched: set[tuple[str, int]] = set()
    for e in circuit.edges:
        feeds = graph.feeds(e.receiver)
        if feeds is not None and e.receiver != graph.output:  # a grouped input node touches its group's nodes
            out, group = feeds
            touched.update((out, i) for i in range(e.receiver_index * group, (e.receiver_index + 1) * group))
        if e.sender in outs:
            touched.add((e.sender, e.sender_index))
    return len(touched), total


def _labels(labels: Any, batch: int, name: str, device: torch.device) -> Tensor:
    check_scalar_labels(labels, batch, name)
    labels = torch.as_tensor(labels, device=device)
    if labels.shape != (batch,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be {batch} integer class labels, got {labels.dtype} {tuple(labels.shape)}")
    return labels


@torch.no_grad()
def _last_position(logits: Tensor) -> Tensor:
    """Sequence logits ``(batch, pos, vocab)`` are labelled at their last position (SPEC 7); others unchanged."""
    return logits[:, -1] if logits.dim() == 3 else logits


@keeps_hook_settings
def evaluate(
    model: Any,
    circuit: Circuit,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    *,
    clean_labels: Optional[Int[Tensor, " batch"]] = None,
    corrupt_labels: Optional[Int[Tensor, " batch"]] = None,
    logit_diff: Optional[Callable[[Tensor], Tensor]] = None,
    ablation: str = "resample",
    check_model: bool = True,
) -> dict[str, float]:
    """The SPEC 5 measures of ``circuit`` (module docstring). Logit-difference measures need
    ``logit_diff`` or both label tensors; accuracies need ``clean_labels``; those keys are left out otherwise."""
    check_model_and_inputs(model, clean, corrupted)  # hooks set up, finite weights and inputs
    graph = runnable_graph(model)
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be a circuits.Circuit, got {type(circuit).__name__}")
    circuit.check_model(model, graph, check_model=check_model)  # before any work; see run_circuit
    clean, corrupted = check_batches(model, clean, corrupted)
    b, device = clean.shape[0], clean.device
    cl = None if clean_labels is None else _labels(clean_labels, b, "clean_labels", device)
    dl = None if corrupt_labels is None else _labels(corrupt_labels, b, "corrupt_labels", device)
    if logit_diff is None and cl is not None and dl is not None:
        rows = torch.arange(b, device=device)

        def logit_diff(logits: Tensor) -> Tensor:
            logits = _last_position(logits)
            return logits[rows, cl] - logits[rows, dl]

    if logit_diff is not None and not callable(logit_diff):
        raise TypeError(f"logit_diff must be a callable (logits) -> (batch,), got {type(logit_diff).__name__}")
    with torch.no_grad():
        full = model(clean)
    for name, lab in (("clean_labels", cl), ("corrupt_labels", dl)):
        if lab is not None:
            check_labels_range(lab, full.shape[-1], name)
    circ = run_circuit(model, circuit, clean, corrupted, ablation=ablation, check_model=False)  # checked above
    n_nodes, n_hidden = hidden_nodes(graph, circuit)
    out: dict[str, float] = {
        "logit_gap": float((full - circ).abs().mean()),
        "kl": float(kl()(circ, full)),
        "n_edges": float(circuit.n_edges),
        "edge_sparsity": float(circuit.sparsity),
        "n_nodes": float(n_nodes),
        "node_sparsity": 1.0 - n_nodes / n_hidden if n_hidden else 0.0,
    }
    if logit_diff is not None:
        empty = run_circuit(model, Circuit.empty(graph), clean, corrupted, ablation=ablation)
        ld_full, ld_circ, ld_abl = (float(logit_diff(x).mean()) for x in (full, circ, empty))
        out.update(logit_diff_full=ld_full, logit_diff_circuit=ld_circ, logit_diff_ablated=ld_abl,
                   logit_diff_recovery=(ld_circ - ld_abl) / (ld_full - ld_abl) if ld_full != ld_abl else float("nan"))
    if cl is not None:
        out["accuracy"] = float((_last_position(circ).argmax(-1) == cl).double().mean())
        out["full_accuracy"] = float((_last_position(full).argmax(-1) == cl).double().mean())
    return out
