"""Train a study's model units in worker processes, one CPU thread each (``reproduce --jobs N``).

Training the 784-100-100-10 MLP is a long chain of small matrix products: one thread per model, N
models at once, uses N cores far better than N threads on one model. Each worker trains one
(regime, seed) unit and writes it to the run store exactly as the sequential loop would, so the
study afterwards finds it finished and reuses it; a unit already finished is not retrained.
Step times measured this way are taken with the other workers running: the report says so.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Sequence


def _train_one(out: str, preset_name: str, train_config: dict[str, Any], regime: str, seed: int, device: str,
               jobs: int) -> str:
    """Worker: train (regime, seed) and store it; returns a one-line summary."""
    import torch

    torch.set_num_threads(1)
    from circuits import model_identity
    from hooked_bimt import load_mnist
    from hooked_bimt.study import measure
    from hooked_bimt.study.presets import get_preset, training_data
    from hooked_bimt.study.units import RunStore
    from hooked_bimt.train import TrainConfig

    store = RunStore(out, log=lambda msg: None)
    data = training_data(get_preset(preset_name), *load_mnist())
    result, metrics = measure.train_unit(regime, TrainConfig.from_dict(train_config), seed, device, data, jobs)
    store.save_model(result, {"metrics": metrics, "fingerprint": model_identity(result.model)["fingerprint"]})
    return f"trained {regime} seed{seed}: test accuracy {metrics['test_accuracy']:.4f}"


def train_units_in_parallel(store: Any, preset: Any, train_config: Any, seeds: Sequence[int], device: str,
                            jobs: int, on_done: Callable[[str], None]) -> int:
    """Train every unfinished (regime, seed) model of the study with ``jobs`` workers; returns how many."""
    todo = [(r, s) for r in preset.regimes for s in seeds if not (store.model_dir(r, s) / "study.json").exists()]
    if not todo:
        return 0
    ctx = mp.get_context("spawn")  # a clean interpreter per worker: no forked torch thread pools
    workers = min(jobs, len(todo))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_train_one, str(Path(store.out)), preset.name, train_config.to_dict(), r, s, device,
                               workers) for r, s in todo]
        for fut in as_completed(futures):
            on_done(fut.result())
    return len(todo)
