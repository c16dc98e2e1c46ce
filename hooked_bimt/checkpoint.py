"""Model checkpoints: ``model.safetensors`` (weights, biases, coordinate and permutation buffers)
and ``config.json`` (architecture + free-form metadata), both written atomically, the JSON last.

No pickle anywhere: safetensors holds tensors only, JSON everything else. Every failure to read a
checkpoint is a ``CheckpointError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hooked_bimt.atomic import atomic_write_bytes, atomic_write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match its config; the message names the file."""


def save_model(model: torch.nn.Module, directory: str | os.PathLike, **metadata: Any) -> Path:
    """Write ``model`` into ``directory`` (created if needed) and return the directory.

    ``metadata`` (regime, step, seed, metrics, ...) goes into ``config.json`` next to the model's
    ``config()``; it must be JSON-serialisable (checked before anything is written).
    """
    directory = Path(directory)
    config = {"format_version": FORMAT_VERSION, "model": model.config(), "dtype": str(model.dtype), **metadata}
    try:
        text = json.dumps(config)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint metadata is not JSON-serialisable: {err}") from err
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, st_save(tensors))
    atomic_write_json(directory / CONFIG, json.loads(text))
    return directory


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise CheckpointError(f"checkpoint config {path} not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint config {path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"checkpoint config {path} has no 'model' section")
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} not found")
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError, OSError) as err:
        raise CheckpointError(f"checkpoint weights {path} are corrupt (not a readable safetensors file): {err}") from err


def load_model(
    directory: str | os.PathLike,
    build: Callable[..., torch.nn.Module],
    device: str | torch.device | None = None,
) -> torch.nn.Module:
    """Rebuild the model saved in ``directory`` bit-exactly (weights, buffers, dtype), on ``device``.

    ``build(**config["model"])`` makes the empty model (``HookedMLP`` for ``HookedMLP.load``), so this file
    needs no model class: the model imports the checkpoint, never the reverse.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} not found")
    config = read_metadata(directory)
    try:
        model = build(**config["model"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint config {directory / CONFIG} describes no valid model: {err}") from err
    path = directory / WEIGHTS
    tensors = _read_tensors(path)
    expected = model.state_dict()
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"checkpoint weights {path} do not match {CONFIG}: missing {missing}, unexpected {extra}")
    for name, want in expected.items():
        if tuple(tensors[name].shape) != tuple(want.shape):
            raise CheckpointError(
                f"checkpoint weights {path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                f"{CONFIG} implies {tuple(want.shape)}"
            )
        if tensors[name].is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"checkpoint weights {path}: tensor {name!r} has dtype {tensors[name].dtype}")
    model = model.to(tensors["linears.0.weight"].dtype)
    model.load_state_dict(tensors, strict=True)
    return model.to(device) if device is not None else model
