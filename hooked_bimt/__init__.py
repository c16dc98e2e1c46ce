"""hooked-bimt: Brain-Inspired Modular Training as TransformerLens hooked models.

Every public name loads on first use, so ``import hooked_bimt`` (and ``hooked-bimt --help``) does not
import torch. ``train`` is both a function and the module ``hooked_bimt.train``: the package keeps the
function bound to ``hooked_bimt.train`` whatever is imported later (``_Package.__setattr__`` ignores the
import system binding the submodule over it).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_LAZY = {
    "HookedMLP": "hooked_bimt.model",
    "load_mnist": "hooked_bimt.data",
    "MNISTSplit": "hooked_bimt.data",
    "MNISTError": "hooked_bimt.data",
    "TrainConfig": "hooked_bimt.train",
    "TrainResult": "hooked_bimt.train",
    "train": "hooked_bimt.train",
    "connection_cost": "hooked_bimt.cost",
    "relocate": "hooked_bimt.swaps",
    "REGIMES": "hooked_bimt.regimes",
    "Regime": "hooked_bimt.regimes",
}
# Functions named like their module: the function wins over the submodule as the package attribute.
_SHADOWING = {name for name, module in _LAZY.items() if module.rsplit(".", 1)[1] == name}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        types.ModuleType.__setattr__(sys.modules[__name__], name, value)
        return value
    raise AttributeError(f"module 'hooked_bimt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWING and isinstance(value, types.ModuleType):
            return  # the submodule stays reachable as sys.modules["hooked_bimt.train"]
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
