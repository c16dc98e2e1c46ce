"""circuits: ACDC-style circuit discovery on any model that declares its graph (``circuit_graph()``)."""

from __future__ import annotations

import importlib
from typing import Any

from circuits.circuit import Circuit, model_identity
from circuits.graph import Connection, Edge, Graph, Nodes, graph_of

# These functions share their module's name: import them eagerly, so ``circuits.acdc`` is the function
# even after ``circuits.acdc`` the module has been imported (a lazy lookup would return the module then).
from circuits.acdc import acdc  # noqa: E402
from circuits.evaluate import evaluate  # noqa: E402
from circuits.node_patching import node_patching  # noqa: E402

# Algorithms and consumers load on first use (one file each; see STYLE.md).
_LAZY = {
    "acdc": "circuits.acdc",
    "threshold_sweep": "circuits.sweep",
    "run_circuit": "circuits.patching",
    "node_patching": "circuits.node_patching",
    "evaluate": "circuits.evaluate",
    "eap": "circuits.attribution",
    "circuit_from_scores": "circuits.attribution",
    "eap_then_acdc": "circuits.attribution",
    "check_graph": "circuits.protocol_check",
    "pessimistic_auc": "circuits.roc",
    "roc_curve": "circuits.roc",
}
_SUBMODULES = {"metrics", "viz", "planted", "attribution", "roc", "protocol_check"}

__all__ = ["Circuit", "Connection", "Edge", "Graph", "Nodes", "graph_of", "model_identity", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"circuits.{name}")
    raise AttributeError(f"module 'circuits' has no attribute {name!r}")
