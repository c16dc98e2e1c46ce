"""One executor job per (regime, seed): train its model(s) (``family.models``: MNIST one for every task, transformers
one per task), then every discovery unit of each.

A job reads everything it needs from ``DIR/run.json`` (``study_config``) and writes each unit to the
run store as soon as it is finished, so any executor (in-process, local subprocesses, Slurm) leaves
the same files; units already finished are reused, which makes every job resumable. The study's
rows are then read back from the store (``collect_rows``), never from a job's return value, so the
numbers do not depend on the executor.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import torch

from circuits import model_identity
from hooked_bimt.study import measure
from hooked_bimt.study.family import family_of
from hooked_bimt.study.units import RunStore


def fingerprint(model: Any) -> str:
    return model_identity(model)["fingerprint"]


def load_or_train(store: RunStore, config: dict[str, Any], regime: str, seed: int, concurrent: int,
                  task: str | None = None) -> tuple[Any, dict]:
    """The model unit (regime, seed[, task]): reused when finished, else trained and stored. Returns (result, info).

    ``task``: the task the model is trained on, for a family with one model per task (``family.models``)."""
    fam = family_of(config)
    slug = fam.model_slug(task)
    loaded = store.load_model(regime, seed, fingerprint, family=fam, slug=slug)
    if loaded is not None:
        return loaded
    result, metrics = fam.train(config, regime, seed, task, concurrent)
    info = {"metrics": metrics, "fingerprint": fingerprint(fam.network(result))}
    store.save_model(result, info, family=fam, slug=slug)
    on = f" on {task}" if task is not None else ""
    store.log(f"trained {regime} seed{seed}{on}: test accuracy {metrics['test_accuracy']:.4f}")
    return result, info


def _batch_units(store: RunStore, config: dict[str, Any], model64: Any, fp: str, task: Any,
                 key: tuple[str, int, str, int], warm: list[float]) -> None:
    """Node patching and one ACDC unit per threshold for one example batch (finished ones reused). Before the
    job's first timed ACDC unit, one untimed warm-up run (``measure.warm_up``; its seconds appended to ``warm``)."""
    todo = [t for t in config["thresholds"] if store.load_unit(key, t, fp) is None]
    np_done = store.load_record(key, "node_patching", fp)
    methods_done = store.load_record(key, "methods", fp) is not None
    if (not todo and np_done is not None and methods_done) or store.load_record(key, "skipped", fp) is not None:
        return
    regime, seed, _, b = key
    try:
        batch = family_of(config).batch(task, model64, config, seed, b)
    except ValueError as err:  # too few correctly classified pairs: a badly trained model, not a crash
        store.save_record(key, "skipped", {"reason": str(err), "model_fingerprint": fp})
        store.log(f"warning: skipping {regime} seed{seed} {task.name} batch{b}: {err}")
        return
    if np_done is None:
        row, restored = measure.node_patching_unit(model64, task, batch)
        store.save_record(key, "node_patching", {"row": row, "node_patching": restored, "model_fingerprint": fp})
    if todo and not warm:
        warm.append(measure.warm_up(model64, batch, todo[0]))
        store.log(f"{regime} seed{seed}: untimed ACDC warm-up (compilation / numba cache) took {warm[0]:.2f} s")
    for thr in todo:
        circuit, row = measure.discover_unit(model64, task, batch, thr)
        store.save_unit(key, thr, circuit, {"row": row, "model_fingerprint": fp})
    if not methods_done:
        _methods_record(store, config, model64, fp, task, batch, key)


def _methods_record(store: RunStore, config: dict[str, Any], model64: Any, fp: str, task: Any, batch: Any,
                    key: tuple[str, int, str, int]) -> None:
    """ACDC (from the stored sweep), EAP and EAP-IG faithfulness curves of one batch (``methods``)."""
    from circuits import Circuit
    from hooked_bimt.study.methods import methods_unit

    circuits = {t: Circuit.load(store.circuit_path(key, t)) for t in config["thresholds"]}
    seconds = sum(float(store.load_unit(key, t, fp)["row"]["discovery_seconds"]) for t in config["thresholds"])
    t0 = time.perf_counter()
    record = methods_unit(model64, task, batch, circuits, seconds)
    store.save_record(key, "methods", {"methods": record, "model_fingerprint": fp,
                                       "wall_seconds": time.perf_counter() - t0})


def model_job(out: str, regime: str, seed: int, threads: int, concurrent: int) -> list[str]:
    """The executor's job: the model unit(s) of (regime, seed) then all their discovery units. Returns its log lines.

    ``threads``: torch CPU threads for this job; ``concurrent``: how many jobs run at once (recorded with
    the training measures: it changes wall-clock times)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    lines: list[str] = []
    store = RunStore(out, log=lines.append)
    try:
        config = store.config()
        fam = family_of(config)
        warm: list[float] = []
        for model_task, names in fam.models(config["tasks"]):
            result, info = load_or_train(store, config, regime, seed, concurrent, model_task)
            model64 = fam.discovery_model(result, config["device"])
            for name in names:
                task = fam.get_task(name)
                for b in range(config["n_batches"]):
                    _batch_units(store, config, model64, info["fingerprint"], task, (regime, seed, fam.slug(task), b),
                                 warm)
    finally:
        torch.set_num_threads(before)  # an inline job runs in the caller's process
    return lines


def batches(store: RunStore, config: dict[str, Any]) -> Iterator[tuple[Any, tuple[str, int, str, int], dict]]:
    """(task, key = (regime, seed, task slug, batch), model info) of every example batch of the study, in
    (regime, seed, task, batch) order, each model unit read back once. Raises ``RuntimeError`` naming a missing one."""
    fam = family_of(config)
    for regime in config["regimes"]:
        for seed in config["seeds"]:
            for model_task, names in fam.models(config["tasks"]):
                loaded = store.load_model(regime, seed, fingerprint, family=fam, slug=fam.model_slug(model_task))
                if loaded is None:
                    on = f" ({model_task})" if model_task is not None else ""
                    raise RuntimeError(f"model unit {regime} seed{seed}{on} is missing in {store.out}: its job failed")
                for name in names:
                    task = fam.get_task(name)
                    for b in range(config["n_batches"]):
                        yield task, (regime, seed, fam.slug(task), b), loaded[1]


def collect_method_rows(store: RunStore, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of methods.csv (``methods.method_rows``) read back from the finished batches; skipped batches have
    none. Raises ``RuntimeError`` naming a batch whose record is missing."""
    from hooked_bimt.study.methods import method_rows

    rows = []
    for task, key, info in batches(store, config):
        if store.load_record(key, "skipped", info["fingerprint"]) is not None:
            continue
        rec = store.load_record(key, "methods", info["fingerprint"])
        if rec is None:
            raise RuntimeError(f"methods record of {Path(*map(str, key))} is missing: its job failed")
        rows += method_rows({"regime": key[0], "seed": key[1], "task": task.name, "batch": key[3]}, rec["methods"])
    return rows


def collect_rows(store: RunStore, config: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of results.csv read back from the finished units, in (regime, seed, task, batch, threshold)
    order, and the skipped batches. Raises ``RuntimeError`` naming a unit that is missing."""
    rows, skipped = [], []
    for task, key, info in batches(store, config):
        regime, seed, _, b = key
        skip = store.load_record(key, "skipped", info["fingerprint"])
        if skip is not None:
            skipped.append(f"{regime} seed{seed} {task.name} batch{b}: {skip['reason']}")
            continue
        np_rec = store.load_record(key, "node_patching", info["fingerprint"])
        for thr in config["thresholds"]:
            unit = store.load_unit(key, thr, info["fingerprint"])
            if unit is None or np_rec is None:
                raise RuntimeError(f"unit {Path(*map(str, key))} threshold {thr:g} is missing: its job failed")
            rows.append({"regime": regime, "seed": seed, "task": task.name, "batch": b,
                         **unit["row"], **np_rec["row"], **info["metrics"]})
    return rows, skipped
