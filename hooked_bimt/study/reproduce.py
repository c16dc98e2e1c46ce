"""``hooked-bimt reproduce``: train every regime x seed, discover and measure circuits, write the report.

    hooked-bimt reproduce --preset quick|paper|smoke|transformer|transformer_quick|transformer_smoke --out DIR
        [--seeds N] [--device cpu|cuda]
        [--thresholds 1e-5,1e-4] [--executor inline|local|slurm] [--jobs N] [--threads T]
        [--slurm-partition P --slurm-time MIN --slurm-gpus G --slurm-cpus C --slurm-mem-gb M --slurm-account A]
    python -m hooked_bimt.study ...        (the same, without the main CLI)

One job per regime x seed: train its model (MNIST; transformers: one model per task), then every discovery unit
of it (task x example batch x ACDC threshold); jobs run on the executor asked for (``executors``: in-process, local
subprocesses, Slurm), at most ``--jobs`` at once. Resumable: each trained model and each discovery unit
is written atomically under DIR as soon as it is finished (``units``); running the same command again
redoes only what is missing, reusing stored numbers (timings included), so a resumed run ends with the
same results, whatever the executor. DIR holding another configuration is refused; a corrupt unit is
moved aside (``*.corrupt-N``) and recomputed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from hooked_bimt.study.environment import machine  # noqa: F401  (re-exported: reproduce.machine)
from hooked_bimt.study.executors import EXECUTORS, SlurmOptions, check_executor
from hooked_bimt.study.presets import PRESETS, Preset, get_preset
from hooked_bimt.validate import check_device as _check_device
from hooked_bimt.validate import check_device_name

# torch, circuits and the tasks load inside the functions that need them: `hooked-bimt reproduce --help` and
# argument errors answer without importing torch (tests/hooked_bimt/test_errors_cli.py).


def study_config(preset: Preset, seeds: int, device: str, thresholds: Sequence[float],
                 tasks: Sequence[str]) -> dict[str, Any]:
    """Everything that determines the results; stored in DIR/run.json, compared on resume, read by the jobs. A
    transformer preset records ``"family": "transformer"``; MNIST ones record no family (run.json as before)."""
    from hooked_bimt.study.family import family_of

    fam = family_of(preset.family)
    config = {
        "preset": preset.name, "regimes": list(preset.regimes), "seeds": list(range(seeds)), "tasks": list(tasks),
        "n_batches": preset.n_batches, "batch_size": preset.batch_size, "thresholds": list(thresholds),
        "acdc": {"engine": "fast", "metric": "kl", "ablation": "resample", "dtype": "float64"},
        "train_config": fam.train_config(preset, tasks), "train_subset": preset.train_subset, "device": device,
    }
    return config if fam.name == "mnist" else {"family": fam.name, **config}


def _check_thresholds(thresholds: Any) -> list[float]:
    if isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        thresholds = [thresholds]
    thr = list(thresholds)
    if not thr or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < float("inf")
                          for t in thr):
        raise ValueError(f"thresholds must be one or more positive numbers, got {thresholds!r}")
    if len({float(t) for t in thr}) != len(thr):
        raise ValueError(f"thresholds must be distinct, got {thresholds!r}")
    return sorted(float(t) for t in thr)


def _validate(preset: str, seeds: int | None, device: str, thresholds: Any, tasks: Sequence[str] | None):
    from hooked_bimt.study.family import family_of

    p = get_preset(preset)
    get_task = family_of(p.family).get_task
    n_seeds = p.n_seeds if seeds is None else seeds
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    thr = _check_thresholds(p.thresholds if thresholds is None else thresholds)
    task_objs = [get_task(t) for t in (p.tasks if tasks is None else tasks)]
    if not task_objs:
        raise ValueError("at least one task is needed")
    return p, n_seeds, _check_device(device), thr, task_objs


def job_order(regimes: Sequence[str], n_seeds: int) -> list[tuple[str, int]]:
    """The (regime, seed) jobs in submission order, seed-major (every regime of seed 0, then of seed 1, ...): a
    change of the machine's load while the study runs falls on every regime alike instead of on whichever regime
    was submitted last, which biased claim 3's wall-clock comparison when jobs went regime by regime."""
    return [(r, s) for s in range(n_seeds) for r in regimes]


def reproduce(out: str | os.PathLike, preset: str = "quick", seeds: int | None = None, device: str = "cpu", *,
              thresholds: Sequence[float] | float | None = None, tasks: Sequence[str] | None = None,
              progress: bool = True, jobs: int = 1, executor: str | None = None, threads: int = 1,
              slurm: SlurmOptions | None = None) -> Path:
    """Run (or resume) the study into ``out``; returns the path of ``report.md``.

    ``seeds``: number of seeds (0..N-1), default the preset's; ``thresholds``: ACDC KL thresholds, default
    the preset's; ``tasks``: task names of the preset's family, default the preset's (MNIST: 8 vs 3 and circle;
    transformers: modular addition and induction); ``executor``: "inline",
    "local" or "slurm" (default: local when ``jobs`` > 1, else inline); ``jobs``: jobs at once;
    ``threads``: torch CPU threads per job; ``slurm``: sbatch options. All input is checked (``ValueError``)
    before any work starts.
    """
    p, n_seeds, device, thr, task_objs = _validate(preset, seeds, device, thresholds, tasks)
    kind = executor if executor is not None else ("local" if isinstance(jobs, int) and jobs > 1 else "inline")
    check_executor(kind, jobs, threads, slurm, device)
    from circuits.paths import check_output_dir
    from hooked_bimt.study.units import RunStore

    check_output_dir(out)  # an existing file, or a path under one, is refused before any training
    from tqdm.auto import tqdm

    from circuits.progress import progress_bar
    from hooked_bimt.study.executors import run_jobs
    from hooked_bimt.study.jobs import model_job
    from hooked_bimt.study.pipeline import write_outputs

    log = lambda msg: tqdm.write(msg, file=sys.stderr)  # noqa: E731
    store = RunStore(out, log=log)
    if kind == "slurm":  # fail on a machine without Slurm before writing anything
        from hooked_bimt.study.executors import make_executor

        make_executor("slurm", store.out / "submitit", jobs=jobs, device=device, slurm=slurm)
    config = study_config(p, n_seeds, device, thr, [t.name for t in task_objs])
    resumed = store.claim(config)
    log(f"settings (also in {Path(out) / 'run.json'}): {config}")
    calls = [(str(store.out), r, s, threads, jobs) for r, s in job_order(p.regimes, n_seeds)]
    with progress_bar(total=len(calls), desc="study", unit="model", disable=not progress, file=sys.stderr) as bar:
        def done(lines: list[str]) -> None:
            for line in lines:
                log(line)
            bar.update(1)

        run_jobs(model_job, calls, kind=kind, folder=store.out / "submitit", jobs=jobs, device=device, slurm=slurm,
                 on_done=done)
    return write_outputs(store, p, setup_extra={"resumed": resumed}, executor=kind)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``reproduce``'s options on its subparser."""
    parser.add_argument("--preset", default="quick", help=f"one of {sorted(PRESETS)} (default quick; smoke is for tests)")
    parser.add_argument("--out", required=True, help="output directory (resumed if it holds this configuration)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the preset's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--thresholds", "--threshold", default=None,
                        help="comma-separated ACDC KL thresholds, e.g. '1e-5,1e-4' (default: the preset's sweep)")
    parser.add_argument("--tasks", default=None, help="comma-separated tasks, e.g. '8v3,circle' (MNIST presets) or "
                        "'modular_addition:59,induction' (transformer presets); default: the preset's")
    parser.add_argument("--executor", choices=EXECUTORS, default=None,
                        help="where jobs run: inline (this process), local (subprocesses), slurm "
                             "(default: local when --jobs > 1, else inline)")
    parser.add_argument("--jobs", type=int, default=1, help="jobs (one per trained model) at once (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per job (default 1)")
    slurm = parser.add_argument_group("Slurm (--executor slurm)")
    slurm.add_argument("--slurm-partition", default=None, help="sbatch --partition")
    slurm.add_argument("--slurm-time", type=int, default=SlurmOptions.time_min, help="time limit per job, minutes")
    slurm.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per job (use with --device cuda)")
    slurm.add_argument("--slurm-cpus", type=int, default=None, help="CPUs per job (default: --threads)")
    slurm.add_argument("--slurm-mem-gb", type=float, default=None, help="memory per job, GB")
    slurm.add_argument("--slurm-account", default=None, help="sbatch --account")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; prints where the report is. Returns 0, or 2 on bad input (message on stderr)."""
    from circuits.paths import check_output_dir

    tasks = None if args.tasks is None else [t for t in args.tasks.split(",") if t.strip()]
    try:
        thresholds = None
        if args.thresholds is not None:
            try:
                thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
            except ValueError as err:
                raise ValueError(f"--thresholds must be comma-separated numbers, got {args.thresholds!r}") from err
        check_device_name(args.device)  # a misspelt device or an impossible --out answers before torch loads
        check_output_dir(args.out)
        slurm = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time, gpus_per_node=args.slurm_gpus,
                             cpus_per_task=args.threads if args.slurm_cpus is None else args.slurm_cpus,
                             mem_gb=args.slurm_mem_gb, account=args.slurm_account)
        report = reproduce(args.out, args.preset, args.seeds, args.device, thresholds=thresholds, tasks=tasks,
                           progress=not args.no_progress, jobs=args.jobs, executor=args.executor,
                           threads=args.threads, slurm=slurm)
    except ValueError as err:
        print(f"hooked-bimt reproduce: error: {err}", file=sys.stderr)
        return 2
    print(f"report written to {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hooked-bimt reproduce", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
