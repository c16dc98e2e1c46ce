"""circuits: ACDC-style circuit discovery on any model that declares its graph (``circuit_graph()``).

Every public function is bound eagerly: several share their module's name (``circuits.acdc`` is the
function, ``circuits.acdc`` the module would shadow a lazy lookup). Only ``circuits.viz``, which pulls in
matplotlib, loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from circuits import metrics, models, planted, roc  # noqa: F401  (submodules; models registers family graphs)
from circuits.acdc import acdc
from circuits.attribution import circuit_from_scores, eap, eap_then_acdc
from circuits.circuit import Circuit, model_identity
from circuits.evaluate import evaluate
from circuits.faithfulness import MIB_LEVELS, FaithfulnessCurve, faithfulness_curve
from circuits.graph import Connection, Edge, Graph, Nodes, graph_of
from circuits.node_patching import node_patching
from circuits.patching import run_circuit
from circuits.protocol_check import check_graph
from circuits.roc import pessimistic_auc, roc_curve
from circuits.sweep import threshold_sweep

__all__ = [
    "Circuit", "Connection", "Edge", "Graph", "Nodes", "graph_of", "model_identity", "check_graph",
    "acdc", "threshold_sweep", "faithfulness_curve", "FaithfulnessCurve", "MIB_LEVELS", "run_circuit", "node_patching", "evaluate",
    "eap", "circuit_from_scores", "eap_then_acdc", "pessimistic_auc", "roc_curve",
    "metrics", "models", "planted", "roc", "viz",
]


def __getattr__(name: str) -> Any:
    if name == "viz":
        return importlib.import_module("circuits.viz")
    raise AttributeError(f"module 'circuits' has no attribute {name!r}")
