"""circuits: ACDC-style circuit discovery on any model that declares its graph (``circuit_graph()``).

Every public name loads on first use, so ``import circuits`` (and ``circuits.paths``, the output-path checks
the command line runs before anything heavy) does not import torch. Three functions share their module's
name (``circuits.acdc``, ``circuits.evaluate``, ``circuits.node_patching``): the package keeps the function
bound whatever is imported later (``_Package.__setattr__`` ignores the import system binding the submodule
over it; the submodule stays in ``sys.modules``). Any other submodule (``circuits.graph``, ``circuits.viz``,
...) is imported when first read as an attribute. Model families (``circuits.models``) register themselves
when ``circuits.families`` is first asked for one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

_LAZY = {
    "Circuit": "circuits.circuit",
    "model_identity": "circuits.circuit",
    "Connection": "circuits.graph",
    "Edge": "circuits.graph",
    "Graph": "circuits.graph",
    "Nodes": "circuits.graph",
    "graph_of": "circuits.graph",
    "check_graph": "circuits.protocol_check",
    "acdc": "circuits.acdc",
    "threshold_sweep": "circuits.sweep",
    "faithfulness_curve": "circuits.faithfulness",
    "FaithfulnessCurve": "circuits.faithfulness",
    "MIB_LEVELS": "circuits.faithfulness",
    "run_circuit": "circuits.patching",
    "node_patching": "circuits.node_patching",
    "evaluate": "circuits.evaluate",
    "eap": "circuits.attribution",
    "circuit_from_scores": "circuits.attribution",
    "eap_then_acdc": "circuits.attribution",
    "pessimistic_auc": "circuits.roc",
    "roc_curve": "circuits.roc",
}
_SUBMODULES = ("metrics", "models", "planted", "roc", "viz")
# Functions named like their module: the function wins over the submodule as the package attribute.
_SHADOWING = {name for name, module in _LAZY.items() if module.rsplit(".", 1)[1] == name}

__all__ = [*_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'circuits' has no attribute {name!r}")
    types.ModuleType.__setattr__(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWING and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable as sys.modules["circuits.acdc"] (and so on)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
