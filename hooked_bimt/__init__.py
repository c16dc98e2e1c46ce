"""hooked-bimt: Brain-Inspired Modular Training as TransformerLens hooked models."""

from __future__ import annotations

import importlib
from typing import Any

from hooked_bimt.data import MNISTError, MNISTSplit, load_mnist
from hooked_bimt.model import HookedMLP

# Eager on purpose: the function ``train`` shares its name with the module ``hooked_bimt.train``; importing
# the module here, then binding the function, keeps ``hooked_bimt.train`` the function whatever is imported later.
from hooked_bimt.train import TrainConfig, TrainResult, train

# Imported on first use, so the package stays importable while a heavier module loads lazily.
_LAZY = {
    "connection_cost": "hooked_bimt.cost",
    "relocate": "hooked_bimt.swaps",
    "REGIMES": "hooked_bimt.regimes",
    "Regime": "hooked_bimt.regimes",
}

__all__ = ["HookedMLP", "load_mnist", "MNISTSplit", "MNISTError", "TrainConfig", "TrainResult", "train", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hooked_bimt' has no attribute {name!r}")
