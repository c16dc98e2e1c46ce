"""``neuron_activations``: circuitsvis's own neuron-activation viewer, fed with the circuit's neurons.

circuitsvis has no image or graph component, but ``text_neuron_activations`` shows, for a list of
"tokens", the activation of a chosen neuron as a colour. Here the tokens are examples (clean, then
corrupted) and the neurons are the hidden neurons of the circuit, named ``blocks.{k}.hook_post[i]``.
The visual is circuitsvis's *local* build (its JavaScript inlined, ~1.3 MB), never the CDN one, so it
renders offline; ``_repr_html_``/``str``/``save`` all use it (``OfflineHTML``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from circuitsvis.activations import text_neuron_activations
from jaxtyping import Float
from torch import Tensor

from circuits.circuit import Circuit
from circuits.hook_settings import keeps_hook_settings
from circuits.viz import data as vd
from circuits.viz.render import OfflineHTML


def circuit_hidden_neurons(model: Any, circuit: Circuit) -> list[tuple[str, int]]:
    """``(post hook, index)`` of every hidden neuron the circuit touches, in forward order."""
    L = model.n_layers
    masks = vd.node_membership(model, circuit)
    return [(model.layer_hook(l, "post"), int(i)) for l in range(1, L) for i in masks[l].nonzero()[0]]


def _names(prefix: str, n: int, labels: Optional[Sequence[Any]]) -> list[str]:
    if labels is not None and len(labels) != n:
        raise ValueError(f"{prefix}_labels has {len(labels)} entries for {n} {prefix} examples")
    return [f" {prefix} {k}" + (f" (y={labels[k]}) " if labels is not None else " ") for k in range(n)]


@keeps_hook_settings
def neuron_activations(
    model: Any,
    circuit: Circuit,
    clean: Float[Tensor, "batch ..."],
    corrupted: Float[Tensor, "batch ..."],
    *,
    max_examples: int = 16,
    clean_labels: Optional[Sequence[Any]] = None,
    corrupted_labels: Optional[Sequence[Any]] = None,
    check_model: bool = True,
) -> OfflineHTML:
    """Activations ``a_k[i]`` (post-activation) of the circuit's hidden neurons on clean and corrupted examples.

    Returns circuitsvis's ``TextNeuronActivations`` visual (offline build): pick a neuron in the drop-down,
    see its activation on each of the first ``max_examples`` clean and corrupted examples.
    """
    vd.check_model(model)
    vd.check_circuit(model, circuit, check_model)
    if not isinstance(max_examples, int) or max_examples < 1:
        raise ValueError(f"max_examples must be a positive integer, got {max_examples!r}")
    neurons = circuit_hidden_neurons(model, circuit)
    if not neurons:
        raise ValueError("the circuit touches no hidden neuron: there is no activation to show")
    clean = model.check_input(clean.to(model.device))[:max_examples]
    corrupted = model.check_input(corrupted.to(model.device))[:max_examples]
    hooks = sorted({h for h, _ in neurons})
    rows = []
    with torch.no_grad():
        for x in (clean, corrupted):
            _, cache = model.run_with_cache(x, names_filter=lambda name: name in hooks)
            rows.append(torch.stack([cache[h][:, i] for h, i in neurons], dim=1))
    acts = torch.cat(rows).detach().to("cpu", torch.float32)  # (examples, neurons)
    tokens = _names("clean", len(clean), clean_labels and list(clean_labels)[: len(clean)]) + _names(
        "corrupted", len(corrupted), corrupted_labels and list(corrupted_labels)[: len(corrupted)]
    )
    vis = text_neuron_activations(
        tokens=tokens,
        activations=acts[:, None, :],
        first_dimension_name="Neurons",
        second_dimension_name="Neuron",
        first_dimension_labels=["circuit hidden neurons"],
        second_dimension_labels=[f"{h}[{i}]" for h, i in neurons],
    )
    return OfflineHTML(vis.local_src, title="Circuit neuron activations (clean vs corrupted)")
