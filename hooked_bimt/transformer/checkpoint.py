"""Saving a trained BIMT transformer (GPT-2 or Llama) and loading it back as a TransformerLens 4
``TransformerBridge``.

A folder holds ``model.safetensors`` (the Hugging Face state dict, no pickle) and ``config.json`` (the
``transformers`` config, the task, the training config, regime, seed, accuracy, and ``weights_sha256``: the
SHA-256 of the exact weight bytes), both written atomically, the JSON last. ``load`` checks the hash, the
shapes against the config and that every weight is finite (``hooked_bimt.checkpoint``'s checks) before it
builds anything; every failure is a ``CheckpointError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from circuits.validate import check_output_dir
from hooked_bimt.atomic import atomic_write_bytes, atomic_write_json
from hooked_bimt.checkpoint import CheckpointError, _check_values, _read_tensors, read_json
from hooked_bimt.files import CONFIG, WEIGHTS
from hooked_bimt.regimes import get_regime
from hooked_bimt.transformer.tasks import TASKS
from hooked_bimt.transformer.training import DTYPES, TrainConfig, TrainResult, hf_module, to_bridge

KIND = "bimt_transformer"
FORMAT_VERSION = 1


def save(result: TrainResult, directory: "str | os.PathLike", *, overwrite: bool = False) -> Path:
    """Write ``result.module`` and what made it into ``directory``; ``FileExistsError`` over a saved model
    unless ``overwrite``."""
    if not isinstance(result, TrainResult):
        raise TypeError(f"save needs the TrainResult that train() returns, got {type(result).__name__}")
    directory = check_output_dir(directory, overwrite=overwrite, holds=(WEIGHTS, CONFIG))
    blob = st_save({k: v.detach().to("cpu").contiguous() for k, v in result.module.state_dict().items()})
    meta = {"kind": KIND, "format_version": FORMAT_VERSION, "hf_config": result.module.config.to_dict(),
            "task": {"name": result.task.name, **dataclasses.asdict(result.task)},
            "train_config": result.config.to_dict(), "regime": result.regime.name, "seed": result.seed,
            "accuracy": result.accuracy, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    json.dumps(meta)  # JSON-serialisable, checked before anything is written
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS, blob)
    atomic_write_json(directory / CONFIG, meta)
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    meta = read_json(path, " (hooked_bimt.transformer.save writes it)")
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise CheckpointError(f"checkpoint config {path} is not a BIMT transformer checkpoint (kind {KIND!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint config {path} has format_version {meta.get('format_version')!r}; "
                              f"this version reads {FORMAT_VERSION}")
    return meta


def load(directory: "str | os.PathLike", *, dtype: torch.dtype = torch.float64,
         device: "str | torch.device" = "cpu") -> TrainResult:
    """The saved model as a ``TrainResult``: ``.module`` (``GPT2LMHeadModel`` or ``LlamaForCausalLM``, ``dtype``),
    ``.bridge`` (a ``TransformerBridge`` of a copy), ``.task``, ``.regime``, ``.config``, ``.seed``, ``.accuracy``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} not found")
    meta = _read_config(directory)
    try:
        task_fields = dict(meta["task"])
        task = TASKS[task_fields.pop("name")](**{k: v for k, v in task_fields.items()})
        config = TrainConfig(**{**meta["train_config"], "device": "cpu"})
        module = hf_module(dict(meta["hf_config"]))
        regime = get_regime(meta["regime"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint config {directory / CONFIG} describes no valid model: {err}") from err
    path = directory / WEIGHTS
    tensors = _read_tensors(path)
    expected = module.state_dict()
    bad = sorted(set(expected) ^ set(tensors)) + [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"checkpoint weights {path} do not match {CONFIG}: missing, unexpected or misshapen {bad}")
    _check_values(path, tensors, meta.get("weights_sha256"))
    module = module.to(next(iter(tensors.values())).dtype)  # load at the saved precision, then convert
    module.load_state_dict(tensors, strict=True)
    module = module.to(dtype).to(device).eval()
    return TrainResult(module=module, bridge=to_bridge(module), task=task, regime=regime, config=config,
                       seed=int(meta.get("seed", 0)), accuracy=float(meta.get("accuracy", float("nan"))))
