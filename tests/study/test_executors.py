"""Executors: Slurm configured as asked (checked on the sbatch script, nothing submitted), local limits."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import submitit

from hooked_bimt.study import executors
from hooked_bimt.study.executors import SlurmOptions, make_executor, run_jobs


@pytest.fixture
def fake_slurm(monkeypatch):
    """Pretend ``srun`` exists so submitit builds a SlurmExecutor; no job is ever submitted."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))


def test_slurm_executor_writes_the_options_asked_for(tmp_path, fake_slurm):
    opts = SlurmOptions(partition="gpu-short", time_min=90, gpus_per_node=1, cpus_per_task=4, mem_gb=16,
                        account="interp")
    ex = make_executor("slurm", tmp_path / "submitit", jobs=3, device="cuda", slurm=opts)
    assert isinstance(ex, submitit.SlurmExecutor)
    script = ex._make_submission_file_text("python job.py", "uid")  # the sbatch file submitit would submit
    for line in ("#SBATCH --partition=gpu-short", "#SBATCH --time=90", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G", "#SBATCH --account=interp"):
        assert line in script, line
    root = str(Path(executors.__file__).resolve().parents[2])
    assert f"export PYTHONPATH={root}" in script  # the jobs import this copy of the project
    assert ex.parameters["array_parallelism"] == 3


def test_slurm_defaults_ask_for_no_gpu_and_no_partition(tmp_path, fake_slurm):
    script = make_executor("slurm", tmp_path, jobs=1)._make_submission_file_text("cmd", "uid")
    assert "--gpus-per-node" not in script and "--partition" not in script and "#SBATCH --time=240" in script


def test_bad_executor_settings_are_named():
    from hooked_bimt.study.executors import check_executor

    with pytest.raises(ValueError, match="needs --slurm-gpus"):
        check_executor("slurm", 2, 1, SlurmOptions(), device="cuda")
    with pytest.raises(ValueError, match="bad Slurm options"):
        check_executor("slurm", 2, 1, SlurmOptions(time_min=0))
    with pytest.raises(ValueError, match="threads must be"):
        check_executor("local", 2, 0)
    check_executor("slurm", 2, 1, SlurmOptions(gpus_per_node=1), device="cuda")  # fine


def test_slurm_without_a_cluster_fails_clearly(tmp_path):
    if submitit.SlurmExecutor.affinity() > 0:
        pytest.skip("this machine has srun")
    with pytest.raises(ValueError, match="needs a Slurm cluster"):
        make_executor("slurm", tmp_path, jobs=1)


def test_local_executor_has_a_long_timeout_and_sees_the_gpu_asked_for(tmp_path):
    ex = make_executor("local", tmp_path, jobs=2, device="cuda:1")
    assert ex.parameters["timeout_min"] == executors.LOCAL_TIMEOUT_MIN  # submitit's default would kill at 2 min
    assert ex.parameters["visible_gpus"] == (1,) and ex.parameters["gpus_per_node"] == 1
    assert "gpus_per_node" not in make_executor("local", tmp_path, jobs=1).parameters


def _stamp(folder: str, name: str, seconds: float) -> list[str]:
    """Job for the test below: record start and end times of this process."""
    start = time.time()
    time.sleep(seconds)
    Path(folder, f"{name}.txt").write_text(f"{os.getpid()} {start} {time.time()}")
    return [f"done {name}"]


@pytest.fixture
def importable_tests(monkeypatch):
    """Local jobs unpickle their function by module name: put tests/ (this module's package root) on their path."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))


@pytest.mark.slow
def test_local_runs_at_most_jobs_at_once_in_subprocesses(tmp_path, importable_tests):
    lines: list[str] = []
    calls = [(str(tmp_path), f"j{i}", 1.0) for i in range(3)]
    run_jobs(_stamp, calls, kind="local", folder=tmp_path / "submitit", jobs=2, on_done=lines.extend)
    assert sorted(lines) == ["done j0", "done j1", "done j2"]
    spans = [tuple(map(float, (tmp_path / f"j{i}.txt").read_text().split())) for i in range(3)]
    assert all(int(pid) != os.getpid() for pid, _, _ in spans)  # each in its own process
    for t in [s for _, s, _ in spans] + [e - 1e-3 for _, _, e in spans]:
        assert sum(s <= t < e for _, s, e in spans) <= 2  # never more than --jobs at once


def test_inline_runs_in_this_process_in_order(tmp_path):
    lines: list[str] = []
    run_jobs(_stamp, [(str(tmp_path), "a", 0.0), (str(tmp_path), "b", 0.0)], kind="inline", folder=tmp_path,
             jobs=1, on_done=lines.extend)
    assert lines == ["done a", "done b"]
    assert int((tmp_path / "a.txt").read_text().split()[0]) == os.getpid()


def _fail(x: int) -> list[str]:
    raise ArithmeticError(f"bad unit {x}")


@pytest.mark.slow
def test_a_failed_local_job_is_reported_with_its_error(tmp_path, importable_tests):
    with pytest.raises(RuntimeError, match="bad unit 7"):
        run_jobs(_fail, [(7,)], kind="local", folder=tmp_path, jobs=1)
