"""The paper's study: MNIST tasks, the ``reproduce`` pipeline and its report (on MNIST MLPs, and on transformers
through the model-family seam, ``family`` and ``transformer_family``).

The only subpackage that imports both ``hooked_bimt`` (training) and ``circuits`` (discovery); those
heavier imports happen inside the functions that need them, so importing this package loads neither torch
nor numpy (``hooked-bimt reproduce --help`` answers at once). ``reproduce`` and the presets are bound
eagerly on purpose: a lazy ``reproduce`` would be shadowed by the submodule ``hooked_bimt.study.reproduce``
once that is imported. The tasks and the bootstrap, whose names differ from their modules', load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from hooked_bimt.study.presets import PRESETS, Preset, get_preset
from hooked_bimt.study.reproduce import reproduce

_LAZY = {"digit_pair": "tasks", "circle": "tasks", "get_task": "tasks", "TaskBatch": "tasks",
         "bootstrap_ci": "bootstrap", "Interval": "bootstrap"}

__all__ = ["digit_pair", "circle", "get_task", "TaskBatch", "bootstrap_ci", "Interval", "PRESETS", "Preset",
           "get_preset", "reproduce"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"hooked_bimt.study.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hooked_bimt.study' has no attribute {name!r}")
