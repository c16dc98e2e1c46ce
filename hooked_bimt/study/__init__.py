"""The paper's study: MNIST tasks, the ``reproduce`` pipeline and its report.

The only subpackage that imports both ``hooked_bimt`` (training) and ``circuits`` (discovery); those
heavier imports happen inside the functions that need them, so importing this package is cheap.
The names are bound eagerly on purpose: a lazy ``reproduce`` would be shadowed by the submodule
``hooked_bimt.study.reproduce`` once that is imported.
"""

from __future__ import annotations

from hooked_bimt.study.bootstrap import Interval, bootstrap_ci
from hooked_bimt.study.presets import PRESETS, Preset, get_preset
from hooked_bimt.study.reproduce import reproduce
from hooked_bimt.study.tasks import TaskBatch, circle, digit_pair, get_task

__all__ = ["digit_pair", "circle", "get_task", "TaskBatch", "bootstrap_ci", "Interval", "PRESETS", "Preset",
           "get_preset", "reproduce"]
