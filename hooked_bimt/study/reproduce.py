"""``hooked-bimt reproduce``: train every regime x seed, discover and measure circuits, write the report.

    hooked-bimt reproduce --preset quick|paper|smoke --out DIR [--seeds N] [--device cpu|cuda]
    python -m hooked_bimt.study ...        (the same, without the main CLI)

Resumable: each trained model and each discovery unit is written atomically under DIR as soon as it
is finished (``units``); running the same command again redoes only what is missing, reusing stored
numbers (timings included), so a resumed run ends with the same results. DIR holding another
configuration is refused; a corrupt unit is moved aside (``*.corrupt-N``) and recomputed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from hooked_bimt.study.environment import machine  # noqa: F401  (re-exported: reproduce.machine)
from hooked_bimt.study.presets import PRESETS, Preset, get_preset, training_data
from hooked_bimt.study.tasks import get_task
from hooked_bimt.study.units import RunStore


def _check_device(device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:N]'") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; expected 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return str(dev)


def study_config(preset: Preset, seeds: int, device: str, threshold: float, tasks: Sequence[str]) -> dict[str, Any]:
    """Everything that determines the results; stored in DIR/run.json and compared on resume."""
    cfg = preset.train_config()
    return {
        "preset": preset.name, "regimes": list(preset.regimes), "seeds": list(range(seeds)), "tasks": list(tasks),
        "n_batches": preset.n_batches, "batch_size": preset.batch_size, "threshold": threshold,
        "acdc": {"engine": "fast", "metric": "kl", "ablation": "resample", "dtype": "float64"},
        "train_config": cfg.to_dict(), "train_subset": preset.train_subset, "device": device,
    }


def _validate(preset: str, seeds: int | None, device: str, threshold: float | None, tasks: Sequence[str] | None):
    p = get_preset(preset)
    n_seeds = p.n_seeds if seeds is None else seeds
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    thr = p.threshold if threshold is None else threshold
    if not isinstance(thr, (int, float)) or not thr > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    task_objs = [get_task(t) for t in (p.tasks if tasks is None else tasks)]
    if not task_objs:
        raise ValueError("at least one task is needed")
    return p, n_seeds, _check_device(device), float(thr), task_objs


def reproduce(out: str | os.PathLike, preset: str = "quick", seeds: int | None = None, device: str = "cpu", *,
              threshold: float | None = None, tasks: Sequence[str] | None = None, progress: bool = True,
              jobs: int = 1) -> Path:
    """Run (or resume) the study into ``out``; returns the path of ``report.md``.

    ``seeds``: number of seeds (0..N-1), default the preset's; ``threshold``: ACDC KL threshold, default
    the preset's; ``tasks``: task names (``get_task``), default 8 vs 3 and circle; ``jobs``: train the
    models first in that many single-threaded worker processes (``parallel``). All input is checked
    (``ValueError``) before any work starts.
    """
    p, n_seeds, device, thr, task_objs = _validate(preset, seeds, device, threshold, tasks)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    from tqdm.auto import tqdm

    from hooked_bimt import load_mnist
    from hooked_bimt.study.pipeline import Pipeline

    names = [t.name for t in task_objs]
    store = RunStore(out, log=lambda msg: tqdm.write(msg, file=sys.stderr))
    config = study_config(p, n_seeds, device, thr, names)
    resumed = store.claim(config)
    if jobs > 1:
        from hooked_bimt.study.parallel import train_units_in_parallel

        train_units_in_parallel(store, p, p.train_config(), list(range(n_seeds)), device, jobs,
                                on_done=lambda msg: tqdm.write(msg, file=sys.stderr))
    train_split, test_split = load_mnist()
    pipe = Pipeline(store, p, p.train_config(), list(range(n_seeds)), task_objs, thr, device,
                    training_data(p, train_split, test_split), test_split)
    total = len(p.regimes) * n_seeds * (1 + len(task_objs) * p.n_batches)
    with tqdm(total=total, desc="study", unit="unit", disable=not progress, file=sys.stderr) as bar:
        rows = pipe.run(bar)
    report = pipe.write_outputs(rows, setup_extra={"resumed": resumed})
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``reproduce``'s options on its subparser."""
    parser.add_argument("--preset", default="quick", help=f"one of {sorted(PRESETS)} (default quick; smoke is for tests)")
    parser.add_argument("--out", required=True, help="output directory (resumed if it holds this configuration)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the preset's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--threshold", type=float, default=None, help="ACDC KL threshold (default: the preset's)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks, e.g. '8v3,circle' (default both)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train the models in N single-threaded worker processes first (default 1: in-process)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the main process (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; prints where the report is. Returns 0, or 2 on bad input (message on stderr)."""
    tasks = None if args.tasks is None else [t for t in args.tasks.split(",") if t.strip()]
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
        report = reproduce(args.out, args.preset, args.seeds, args.device, threshold=args.threshold, tasks=tasks,
                           progress=not args.no_progress, jobs=args.jobs)
    except ValueError as err:
        print(f"hooked-bimt reproduce: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hooked-bimt reproduce", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
