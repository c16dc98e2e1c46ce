"""Model checkpoints: ``model.safetensors`` (weights, biases, coordinate and permutation buffers)
and ``config.json`` (architecture + free-form metadata), both written atomically, the JSON last.

No pickle anywhere: safetensors holds tensors only, JSON everything else. Every failure to read a
checkpoint is a ``CheckpointError`` naming the file and what is wrong with it.

``config.json`` records ``weights_sha256``, the SHA-256 of the exact bytes of ``model.safetensors``;
``load_model`` refuses weights whose hash differs (a flipped bit, a swapped file). Checkpoints saved
before the hash existed (no ``weights_sha256``) still load, with a ``UserWarning`` saying to re-save.
Loading also refuses an unknown ``format_version``, non-finite weights, and coordinate-permutation
buffers (``in_perm``, ``out_perm``) that are not permutations.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from circuits.paths import check_output_dir
from hooked_bimt.atomic import atomic_write_bytes, atomic_write_json
from hooked_bimt.files import CONFIG, WEIGHTS

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match its config; the message names the file."""


def save_model(
    model: torch.nn.Module, directory: str | os.PathLike, *, overwrite: bool = False, **metadata: Any
) -> Path:
    """Write ``model`` into ``directory`` (created if needed) and return the directory.

    ``metadata`` (regime, step, seed, metrics, ...) goes into ``config.json`` next to the model's
    ``config()``; it must be JSON-serialisable (checked before anything is written). A directory that
    already holds a checkpoint is refused (``FileExistsError``) unless ``overwrite=True``.
    """
    directory = check_output_dir(directory, overwrite=overwrite, holds=(WEIGHTS, CONFIG))
    config = {"format_version": FORMAT_VERSION, "model": model.config(), "dtype": str(model.dtype), **metadata}
    try:
        text = json.dumps(config)
    except (TypeError, ValueError) as err:
        raise TypeError(f"checkpoint metadata is not JSON-serialisable: {err}") from err
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors)
    text = json.dumps({**json.loads(text), "weights_sha256": hashlib.sha256(blob).hexdigest()})
    atomic_write_bytes(directory / WEIGHTS, blob)
    atomic_write_json(directory / CONFIG, json.loads(text))
    return directory


def read_json(path: Path, hint: str = "") -> Any:
    """The parsed JSON file of a checkpoint, or ``CheckpointError`` naming what is wrong (``hint``: who writes it)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint config {path} not found{hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint config {path} is not valid JSON: {err}") from err


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint."""
    path = Path(directory) / CONFIG
    config = read_json(path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"checkpoint config {path} has no 'model' section")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint config {path} has format_version {version!r}; this version of hooked-bimt "
                              f"reads format_version {FORMAT_VERSION} (a newer hooked-bimt wrote it, or it is corrupt)")
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} not found")
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError, OSError) as err:
        raise CheckpointError(f"checkpoint weights {path} are corrupt (not a readable safetensors file): {err}") from err


def _check_values(path: Path, tensors: dict[str, torch.Tensor], sha256: Any) -> None:
    """The recorded SHA-256 of the file; finite floating tensors; ``in_perm`` / ``out_perm`` permutations.
    (Run after the structural checks, whose messages say more about a file that is the wrong shape.)"""
    if sha256 is None:
        warnings.warn(f"checkpoint {path.parent} was saved before content hashes (no weights_sha256 in {CONFIG}); "
                      "its integrity cannot be checked: re-save it to add one", UserWarning, stacklevel=3)
    elif hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise CheckpointError(f"checkpoint weights {path} do not match the SHA-256 recorded in {CONFIG}: the file was "
                              "modified or corrupted after saving; restore it or retrain")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint weights {path}: tensor {name!r} holds NaN or infinite values; "
                                  "the model diverged or the file is damaged")
        if name.endswith("_perm") and not torch.equal(t.sort().values, torch.arange(len(t), dtype=t.dtype)):
            raise CheckpointError(f"checkpoint weights {path}: {name!r} is not a permutation of 0..{len(t) - 1}")


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
    _check_values(path, tensors, config.get("weights_sha256"))
    model = model.to(tensors["linears.0.weight"].dtype)
    model.load_state_dict(tensors, strict=True)
    return model.to(device) if device is not None else model
