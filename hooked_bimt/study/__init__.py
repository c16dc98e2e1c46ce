"""The paper's study: MNIST tasks, the ``reproduce`` pipeline and its report.

The only subpackage that imports both ``hooked_bimt`` (training) and ``circuits`` (discovery).
Names load lazily so ``import hooked_bimt.study`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "digit_pair": "hooked_bimt.study.tasks",
    "circle": "hooked_bimt.study.tasks",
    "get_task": "hooked_bimt.study.tasks",
    "TaskBatch": "hooked_bimt.study.tasks",
    "bootstrap_ci": "hooked_bimt.study.bootstrap",
    "Interval": "hooked_bimt.study.bootstrap",
    "PRESETS": "hooked_bimt.study.presets",
    "Preset": "hooked_bimt.study.presets",
    "reproduce": "hooked_bimt.study.reproduce",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hooked_bimt.study' has no attribute {name!r}")
