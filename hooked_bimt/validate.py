"""Checks run before any work starts: each raises an error that names the problem and what to do.

Imports nothing heavy at module level. Output-path checks live in ``circuits.paths``
(``check_output_dir``, ``check_output_file``, torch-free), shared by both packages.
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any


# Device types torch knows that this toolkit does not run on (a name outside these and cpu/cuda is unknown).
_OTHER_TORCH_DEVICES = ("mps", "xpu", "meta", "hip", "xla", "lazy", "vulkan", "ipu", "hpu", "mtia", "maia", "ve",
                        "fpga", "ort", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")
_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def check_device_name(device: Any) -> str:
    """The spelling of a device, checked without importing torch (the command line answers at once): 'cpu',
    'cuda' or 'cuda:N', else ``ValueError``; whether CUDA is there is ``check_device``'s question."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    if _DEVICE.fullmatch(device):
        return device
    if device.split(":", 1)[0] in _OTHER_TORCH_DEVICES:
        raise ValueError(f"unsupported device {device!r}; expected 'cpu' or 'cuda[:N]'")
    raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:N]'")


def check_device(device: Any) -> str:
    """``device`` as a string torch accepts ('cpu', 'cuda', 'cuda:1'), or ``ValueError`` saying what is known."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    device = check_device_name(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use 'cpu'")
    return str(torch.device(device))


def _check_value(name: str, kind: str, value: Any) -> None:
    """One field against its annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[X, ...]``)."""
    if kind.endswith(" | None"):
        if value is None:
            return
        kind = kind[: -len(" | None")]
    if kind.startswith("tuple["):
        if not isinstance(value, tuple):
            raise TypeError(f"TrainConfig.{name} must be a tuple, got {value!r}")
        inner = kind[len("tuple[") :].split(",")[0].strip()
        for item in value:
            _check_value(name, inner, item)
        return
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
    }.get(kind)
    if ok is not None and not ok(value):
        what = {"float": "a finite number", "int": "an int", "str": "a string"}.get(kind, f"a {kind}")
        raise ValueError(f"TrainConfig.{name} must be {what}, got {value!r}")


def check_config_fields(config: Any) -> None:
    """Every field of a dataclass config against its annotation; then the non-negative physical constants.

    Generic so that fields added later are covered too: an int field given 2.5 or a float field given
    ``inf``/``nan`` is refused by name.
    """
    for f in dataclasses.fields(config):
        _check_value(f.name, str(f.type), getattr(config, f.name))
    for name in ("y_star", "distance_factor", "last_layer_distance_factor", "lambda_factor", "weight_decay"):
        value = getattr(config, name, 0)
        if value < 0:
            raise ValueError(f"TrainConfig.{name} must be >= 0 (a negative value makes the connection cost negative), "
                             f"got {value!r}")


def check_data_fits(widths: tuple[int, ...], n_features: int, n_classes: int) -> None:
    """The model's input and output widths must match the data (MNIST: 784 pixels, 10 classes)."""
    if widths[0] != n_features:
        raise ValueError(f"TrainConfig.widths[0] is {widths[0]} but the data has {n_features} features per example; "
                         f"set widths=({n_features}, ..., {n_classes})")
    if widths[-1] != n_classes:
        raise ValueError(f"TrainConfig.widths[-1] is {widths[-1]} but the data has {n_classes} classes; "
                         f"set widths=({n_features}, ..., {n_classes})")


def warn_surprising(regime: Any, config: Any) -> None:
    """Warnings for legitimate but surprising runs (e.g. a swapping regime that never reaches a swap step)."""
    if getattr(regime, "swaps", False) and config.steps < config.swap_every:
        warnings.warn(f"regime {regime.name!r} swaps every {config.swap_every} steps but the run has only "
                      f"{config.steps}: no swap will happen (raise steps or lower swap_every)",
                      UserWarning, stacklevel=3)
