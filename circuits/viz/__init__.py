"""circuits.viz: see a circuit. An offline interactive view (``circuit_graph``), circuitsvis's neuron
activations for the circuit's neurons (``neuron_activations``), and matplotlib figures for papers
(``draw_network``, ``network_vs_circuit``). ``Placement`` and ``Backdrop``: your own positions for the units of
the circuit view, and a network drawn under it."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "circuit_graph": "circuits.viz.html",
    "CircuitGraph": "circuits.viz.html",
    "OfflineHTML": "circuits.viz.render",
    "Placement": "circuits.viz.placement",
    "Backdrop": "circuits.viz.placement",
    "neuron_activations": "circuits.viz.activations",
    "draw_network": "circuits.viz.static",
    "network_vs_circuit": "circuits.viz.static",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'circuits.viz' has no attribute {name!r}")
