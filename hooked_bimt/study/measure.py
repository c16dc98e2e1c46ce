"""One unit of work each: train a model, or discover and measure one circuit (SPEC 5).

Per example batch (regime x seed x task x batch), in float64, ``node_patching_unit`` once and
``discover_unit`` once per ACDC threshold:

- ACDC (``circuits.acdc``, fast engine, KL metric, resample ablation, one of the preset's thresholds); its
  ``discovery_seconds`` exclude one-off compilation: each job runs ``warm_up`` (untimed) before its first unit;
- ``circuits.evaluate``: circuit logit gap ``mean |logits_full - logits_circuit|``, KL, logit-difference
  recovery ``(LD_circuit - LD_ablated) / (LD_full - LD_ablated)`` (SPEC 5; LD_ablated: the corrupted run),
  edge and node sparsity, accuracies;
- ``circuits.node_patching``: fraction of the clean logit difference each hidden neuron restores,
  summarised by its maximum and the count of neurons restoring >= 10%.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

# Columns of results.csv, in order. Wall-clock columns differ between two runs of the same configuration.
KEY_COLUMNS = ("regime", "seed", "task", "batch", "threshold")
PAIR_COLUMNS = ("n_candidates", "n_used", "n_dropped")
EVAL_COLUMNS = (
    "logit_gap", "kl", "logit_diff_full", "logit_diff_circuit", "logit_diff_ablated", "logit_diff_recovery", "accuracy", "full_accuracy",
    "n_edges", "n_total_edges", "edge_sparsity", "n_nodes", "node_sparsity",
)
DISCOVERY_COLUMNS = ("discovery_seconds", "node_patching_seconds", "node_patch_max", "node_patch_n_above_10pct")
TRAIN_COLUMNS = (
    "test_accuracy", "train_seconds", "seconds_per_step", "peak_memory_bytes", "memory_method",
    "inference_ms_per_batch", "steps", "swaps", "training_jobs",
)
COLUMNS = KEY_COLUMNS + PAIR_COLUMNS + EVAL_COLUMNS + DISCOVERY_COLUMNS + TRAIN_COLUMNS
WALL_CLOCK_COLUMNS = ("discovery_seconds", "node_patching_seconds", "train_seconds", "seconds_per_step",
                      "inference_ms_per_batch")
DISCOVERY_DTYPE = torch.float64


def _plain(v: Any) -> Any:
    """JSON-ready value: tensors and numpy scalars become Python numbers (or lists)."""
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def train_unit(regime: str, config: Any, seed: int, device: str, data: Any, jobs: int = 1) -> tuple[Any, dict[str, Any]]:
    """Train one model; returns the TrainResult and its training measures (TRAIN_COLUMNS).

    ``jobs``: how many models were training at once on this machine (``reproduce --jobs``), recorded
    because it changes the wall-clock measures. Peak memory: the meter of SPEC 5 (``TrainingMemoryMeter``)."""
    from hooked_bimt.memory import TrainingMemoryMeter
    from hooked_bimt.training import train

    result = train(regime, config, seed=seed, device=device, data=data, progress=False, hook=TrainingMemoryMeter())
    metrics = {k: _plain(result.metrics.get(k)) for k in TRAIN_COLUMNS if k != "training_jobs"}
    metrics["training_jobs"] = jobs
    return result, metrics


def discovery_model(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """A float64 copy of ``model`` on ``device`` for exact discovery; the trained model is left as is."""
    return copy.deepcopy(model).to(device=device, dtype=DISCOVERY_DTYPE).eval()


WARM_UP_PAIRS = 8


def warm_up(model64: torch.nn.Module, batch: Any, threshold: float) -> float:
    """One untimed ACDC run on the first ``WARM_UP_PAIRS`` pairs of ``batch``, before a job's first timed unit; returns
    its seconds (logged, never reported). The fast engine's compiled loop is built by numba on its first call in a
    process (~20-30 s on a fresh clone, ~1 s to load from numba's cache); without this the first unit of each job
    carried that one-off cost in its discovery time, biasing claim 3 against whichever regime ran first."""
    from circuits.acdc import acdc

    n = min(WARM_UP_PAIRS, batch.clean.shape[0])
    t0 = time.perf_counter()
    acdc(model64, batch.clean[:n], batch.corrupted[:n], threshold=threshold, metric="kl", ablation="resample",
         engine="fast", progress=False)
    return time.perf_counter() - t0


def logit_diff_of(task: Any, batch: Any) -> Any:
    """The task's logit difference ``(logits) -> (batch,)``: its own (the MNIST tasks: 8 vs 3, circle) or, for a task
    judged on its prompts' labels (``logit_diff`` None: the transformer tasks), ``logit[clean label] - logit[corrupt
    label]`` at the last position, ``circuits.evaluate``'s default."""
    if task.logit_diff is not None:
        return task.logit_diff
    clean, corrupt = batch.clean_labels, batch.corrupt_labels

    def label_logit_diff(logits: torch.Tensor) -> torch.Tensor:
        """Rows ``m * b + i`` (``node_patching`` stacks copies of the batch) take example i's labels."""
        last = logits[:, -1] if logits.dim() == 3 else logits
        k, rows = last.shape[0] // len(clean), torch.arange(last.shape[0], device=last.device)
        return last[rows, clean.to(last.device).repeat(k)] - last[rows, corrupt.to(last.device).repeat(k)]

    return label_logit_diff


def discover_unit(model64: torch.nn.Module, task: Any, batch: Any, threshold: float) -> tuple[Any, dict[str, Any]]:
    """ACDC at ``threshold`` + evaluation on one batch; returns (circuit, measures row)."""
    # Import the functions from their modules: ``circuits.acdc`` the attribute is shadowed by the submodule.
    from circuits.acdc import acdc
    from circuits.evaluate import evaluate

    circuit = acdc(
        model64, batch.clean, batch.corrupted, threshold=threshold, metric="kl", ablation="resample",
        engine="fast", progress=False,
    )
    ev = evaluate(
        model64, circuit, batch.clean, batch.corrupted, clean_labels=batch.clean_labels,
        corrupt_labels=batch.corrupt_labels, logit_diff=logit_diff_of(task, batch), ablation="resample",
    )
    row = {k: _plain(ev.get(k)) for k in EVAL_COLUMNS}
    row["n_total_edges"] = circuit.n_total_edges
    row.update(threshold=threshold, n_candidates=batch.n_candidates, n_used=batch.n_used, n_dropped=batch.n_dropped,
               discovery_seconds=float(circuit.seconds))
    return circuit, row


def node_patching_unit(model64: torch.nn.Module, task: Any, batch: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Node patching on one batch (independent of the ACDC threshold); returns (row fields, per-neuron lists)."""
    from circuits.node_patching import node_patching

    t0 = time.perf_counter()
    restored = node_patching(model64, batch.clean, batch.corrupted, logit_diff_of(task, batch))
    np_seconds = time.perf_counter() - t0
    flat = torch.cat([v.detach().flatten().double().cpu() for v in restored.values()])
    row = {"node_patching_seconds": np_seconds, "node_patch_max": float(flat.max()) if flat.numel() else 0.0,
           "node_patch_n_above_10pct": int((flat >= 0.1).sum())}
    return row, {k: _plain(v.detach().cpu()) for k, v in restored.items()}
