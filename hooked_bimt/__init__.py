"""hooked-bimt: Brain-Inspired Modular Training as TransformerLens hooked models.

Every public name loads on first use, so ``import hooked_bimt`` (and ``hooked-bimt --help``) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "HookedMLP": "hooked_bimt.model",
    "load_mnist": "hooked_bimt.data",
    "MNISTSplit": "hooked_bimt.data",
    "MNISTError": "hooked_bimt.data",
    "TrainConfig": "hooked_bimt.train_config",
    "TrainResult": "hooked_bimt.training",
    "train": "hooked_bimt.training",
    "connection_cost": "hooked_bimt.cost",
    "relocate": "hooked_bimt.swaps",
    "REGIMES": "hooked_bimt.regimes",
    "Regime": "hooked_bimt.regimes",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hooked_bimt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
