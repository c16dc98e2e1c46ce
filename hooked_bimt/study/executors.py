"""Where the study's jobs run (``reproduce --executor``), through submitit.

- ``inline``: in this process, one job after another (the default with ``--jobs 1``);
- ``local``: submitit's ``LocalExecutor``, one subprocess per job, at most ``--jobs`` at once (the
  default with ``--jobs`` > 1); each job uses ``--threads`` torch threads;
- ``slurm``: submitit's ``SlurmExecutor``, one array task per job (``slurm_array_parallelism`` =
  ``--jobs``), with the partition, time limit, GPUs, CPUs and memory asked for.

Jobs write their units into DIR themselves (``jobs.model_job``), so the executor changes where the
work runs, never the numbers. Job files and logs go to ``DIR/submitit``. Subprocess and Slurm jobs
import this same copy of ``hooked_bimt`` (its root is put on their ``PYTHONPATH``).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

EXECUTORS = ("inline", "local", "slurm")
LOCAL_TIMEOUT_MIN = 24 * 60  # submitit's LocalExecutor kills a job after 2 minutes unless told otherwise


@dataclass(frozen=True)
class SlurmOptions:
    """The usual ``sbatch`` options: ``--partition``, ``--time`` (minutes), ``--gpus-per-node``,
    ``--cpus-per-task``, ``--mem`` (GB; None: the cluster's default), ``--account``."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    account: str | None = None


def check_executor(kind: str, jobs: int, threads: int, slurm: SlurmOptions | None = None, device: str = "cpu") -> None:
    """``ValueError`` naming the problem for a bad executor set-up (before any work)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
    for name, v in (("jobs", jobs), ("threads", threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if kind == "inline" and jobs > 1:
        raise ValueError(f"--executor inline runs one job at a time; got --jobs {jobs} (use --executor local)")
    s = slurm or SlurmOptions()
    if s.time_min < 1 or s.gpus_per_node < 0 or s.cpus_per_task < 1 or (s.mem_gb is not None and s.mem_gb <= 0):
        raise ValueError(f"bad Slurm options {s}: time and CPUs must be >= 1, GPUs >= 0, memory > 0")
    if kind == "slurm" and device.startswith("cuda") and s.gpus_per_node < 1:
        raise ValueError(f"--device {device} with --executor slurm needs --slurm-gpus >= 1 (the jobs would get no GPU)")


def _pythonpath_setup() -> list[str]:
    root = str(Path(__file__).resolve().parents[2])  # the directory holding the hooked_bimt package
    return [f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}"]


def make_executor(kind: str, folder: str | Path, *, jobs: int, device: str = "cpu",
                  slurm: SlurmOptions | None = None) -> Any:
    """The configured submitit executor for ``kind`` ("local" or "slurm"); nothing is submitted.

    Raises ``ValueError`` for ``slurm`` on a machine without Slurm (no ``srun``)."""
    import submitit

    setup = _pythonpath_setup()
    if kind == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        gpu = device.split(":")
        cuda = {"gpus_per_node": 1, "visible_gpus": (int(gpu[1]) if len(gpu) > 1 else 0,)} if gpu[0] == "cuda" else {}
        ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, setup=setup, **cuda)
        return ex
    if kind != "slurm":
        raise ValueError(f"make_executor builds 'local' or 'slurm' executors, got {kind!r}")
    try:
        ex = submitit.SlurmExecutor(folder=str(folder))
    except RuntimeError as err:
        raise ValueError(f"--executor slurm needs a Slurm cluster: {err}") from err
    s = slurm or SlurmOptions()
    params: dict[str, Any] = {"time": s.time_min, "cpus_per_task": s.cpus_per_task, "array_parallelism": jobs,
                              "setup": setup, "job_name": "hooked-bimt-study"}
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    params.update({k: v for k, v in (("partition", s.partition), ("account", s.account)) if v is not None})
    if s.mem_gb is not None:
        params["mem"] = f"{int(s.mem_gb)}G"
    ex.update_parameters(**params)
    return ex


def _wait(job: Any) -> list[str]:
    try:
        return job.result()
    except Exception as err:  # submitit's FailedJobError carries the job's traceback and log paths
        raise RuntimeError(f"study job {job.job_id} failed: {err}") from err


def run_jobs(fn: Callable[..., list[str]], calls: Sequence[tuple], *, kind: str, folder: str | Path, jobs: int,
             device: str = "cpu", slurm: SlurmOptions | None = None,
             on_done: Callable[[list[str]], None] = lambda lines: None) -> None:
    """Run ``fn(*args)`` for every ``args`` in ``calls`` on the executor ``kind``, at most ``jobs`` at once;
    ``on_done(log lines)`` after each. A failed job raises ``RuntimeError`` once the running ones finish."""
    if kind == "inline":
        for args in calls:
            on_done(fn(*args))
        return
    ex = make_executor(kind, folder, jobs=jobs, device=device, slurm=slurm)
    if kind == "slurm":
        submitted = ex.map_array(fn, *zip(*calls)) if calls else []
        for job in submitted:
            on_done(_wait(job))
        return
    pending, running, errors = list(calls), [], []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                running.append(ex.submit(fn, *pending.pop(0)))
            time.sleep(0.2)
            for job in [j for j in running if j.done()]:
                running.remove(job)
                try:
                    on_done(_wait(job))
                except RuntimeError as err:
                    errors.append(err)
                    pending.clear()
    except BaseException:  # Ctrl-C or an error here: stop the subprocesses too (finished units are kept)
        for job in running:
            job.cancel()
        raise
    if errors:
        raise errors[0]
