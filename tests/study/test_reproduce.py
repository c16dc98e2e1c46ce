"""End to end: ``reproduce --preset smoke`` on real MNIST with the real training and ACDC engine.

Kill-and-resume test, exactly what is compared: run A is uninterrupted; run B is a real subprocess
SIGKILLed as soon as its first unit (the first trained model) is on disk, then resumed. Every column of
results.csv is compared between A and B except the wall-clock columns (``measure.WALL_CLOCK_COLUMNS``:
each unit was timed separately in A and in B). For the unit finished before the kill, B's timing
columns must equal the ones stored by the killed process (it was reused, not redone). Resuming a
finished B once more must leave results.csv byte-identical (every unit reused, timings included).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hooked_bimt.study.measure import WALL_CLOCK_COLUMNS  # noqa: E402
from hooked_bimt.study.reproduce import reproduce  # noqa: E402
from hooked_bimt.study.summary import read_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FIRST_UNIT = ("models", "l1", "seed0", "study.json")  # smoke: regimes (l1, bimt), 1 seed


def _command(out: Path) -> list[str]:
    """``python -m hooked_bimt reproduce`` once the CLI exists, else the study module directly."""
    if (ROOT / "hooked_bimt" / "__main__.py").exists() and (ROOT / "hooked_bimt" / "cli.py").exists():
        head = [sys.executable, "-m", "hooked_bimt", "reproduce"]
    else:
        head = [sys.executable, "-m", "hooked_bimt.study"]
    return head + ["--preset", "smoke", "--out", str(out), "--no-progress"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "A"
    proc = _run(out)
    assert f"report written to {out / 'report.md'}" in proc.stdout
    return out


def _without(rows: list[dict], cols) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in cols} for r in rows]


def test_outputs_figures_and_verdicts(smoke_run):
    rows = read_csv(smoke_run / "results.csv")
    assert len(rows) == 2 * 1 * 2 * 1 * 3  # regimes x seeds x tasks x batches x thresholds
    assert {(r["regime"], r["task"], float(r["threshold"])) for r in rows} == {
        (g, t, thr) for g in ("l1", "bimt") for t in ("digit_pair:8:3", "circle") for thr in (1e-5, 1e-4, 1e-3)}
    for g in ("l1", "bimt"):  # a higher threshold never keeps more edges here (the sweep spans sizes)
        for t in ("digit_pair:8:3", "circle"):
            edges = [float(r["n_edges"]) for r in sorted(rows, key=lambda r: float(r["threshold"]))
                     if r["regime"] == g and r["task"] == t]
            assert edges[0] > edges[-1]
    for r in rows:
        assert 0.0 <= float(r["edge_sparsity"]) <= 1.0 and float(r["logit_gap"]) >= 0.0
        ld_full, ld_circ, ld_abl = (float(r[k]) for k in ("logit_diff_full", "logit_diff_circuit", "logit_diff_ablated"))
        assert float(r["logit_diff_recovery"]) == pytest.approx((ld_circ - ld_abl) / (ld_full - ld_abl))
        assert int(r["n_used"]) == 8 and int(r["n_candidates"]) >= 8
    assert len(read_csv(smoke_run / "summary.csv")) == 4 * 3
    figs = sorted(p.name for p in (smoke_run / "figures").iterdir())
    assert figs == ["a_network_vs_circuit_bimt.png", "a_network_vs_circuit_l1.png", "b_frontier_8v3.png",
                    "b_frontier_circle.png", "d_training_memory.png", "e_training_time.png",
                    "f_inference_latency.png"]
    for f in (smoke_run / "figures").iterdir():
        assert f.stat().st_size > 1000 and f.read_bytes()[:4] == b"\x89PNG"
    report = (smoke_run / "report.md").read_text()
    assert all(f"### Claim {n}:" in report for n in "1234") and "pairs used of" in report
    assert "## Discovery methods compared (MIB faithfulness curves)" in report


def test_methods_csv_compares_acdc_eap_and_eap_ig_per_batch(smoke_run):
    rows, methods = read_csv(smoke_run / "results.csv"), read_csv(smoke_run / "methods.csv")
    assert len(methods) == 2 * 1 * 2 * 1 * 3  # regimes x seeds x tasks x batches x methods
    for m in methods:
        assert float(m["f@1"]) == pytest.approx(1.0) and float(m["cmd"]) >= 0.0 and float(m["seconds"]) > 0
        if m["method"] == "acdc":  # the sweep's cost: the batch's ACDC runs, one per threshold
            sweep = [float(r["discovery_seconds"]) for r in rows
                     if (r["regime"], r["task"], r["batch"]) == (m["regime"], m["task"], m["batch"])]
            assert len(sweep) == 3 and float(m["seconds"]) == pytest.approx(sum(sweep))
    report = (smoke_run / "report.md").read_text()
    for method in ("acdc", "eap", "eap_ig"):
        assert f"| {method} | bimt | 1 |" in report and f"| {method} | l1 | 1 |" in report


def test_first_unit_of_each_job_is_not_a_timing_outlier(smoke_run):
    """The run is a fresh interpreter: numba loads (or compiles) the fast engine's loop on its first ACDC call, ~1 s
    from a warm cache, ~30 s from a cold one, against ~0.1 s per smoke unit. The job's untimed warm-up must absorb
    it, so the job's first unit (first task, batch 0, first threshold) is no slower than 3x its slowest other unit."""
    rows = read_csv(smoke_run / "results.csv")
    for regime in ("l1", "bimt"):  # one job each (one seed)
        job = [r for r in rows if r["regime"] == regime]  # in the job's order: task, batch, threshold
        first, others = float(job[0]["discovery_seconds"]), [float(r["discovery_seconds"]) for r in job[1:]]
        assert (job[0]["task"], job[0]["batch"], float(job[0]["threshold"])) == ("digit_pair:8:3", "0", 1e-5)
        assert first <= 3 * max(others), (regime, first, others)


def test_rebuild_from_results_csv_alone_gives_the_same_report(smoke_run, tmp_path):
    """``hooked_bimt.study.rebuild``: the report, summary.csv and summary figures from run.json + results.csv only
    (models and units deleted, as in docs/results/paper) equal the ones the run wrote; only the 'resumed' note differs."""
    from hooked_bimt.study.rebuild import main

    out = tmp_path / "copy"
    shutil.copytree(smoke_run, out)
    shutil.rmtree(out / "models")
    shutil.rmtree(out / "units")
    (out / "summary.csv").unlink()
    assert main([str(out)]) == 0
    assert (out / "summary.csv").read_bytes() == (smoke_run / "summary.csv").read_bytes()
    for f in ("b_frontier_8v3.png", "d_training_memory.png"):
        assert (out / "figures" / f).read_bytes() == (smoke_run / "figures" / f).read_bytes()
    old, new = ((d / "report.md").read_text().splitlines() for d in (smoke_run, out))
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    assert len(old) == len(new) and len(changed) == 1 and changed[0][1].startswith("- **resumed**: True (report rebuilt")
    assert main([str(tmp_path / "nowhere")]) == 2


def test_kill_midway_and_resume_gives_identical_results(smoke_run, tmp_path):
    out = tmp_path / "B"
    proc = subprocess.Popen(_command(out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = out.joinpath(*FIRST_UNIT)
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the first unit was never written"
    assert not (out / "results.csv").exists(), "the run finished before it could be killed"
    first = marker.read_text()
    weights = marker.with_name("model.safetensors")
    mtime = weights.stat().st_mtime_ns

    _run(out)
    a, b = read_csv(smoke_run / "results.csv"), read_csv(out / "results.csv")
    assert _without(a, WALL_CLOCK_COLUMNS) == _without(b, WALL_CLOCK_COLUMNS)
    assert marker.read_text() == first and weights.stat().st_mtime_ns == mtime  # reused, not retrained
    import json

    stored = json.loads(first)["metrics"]
    for r in (r for r in b if r["regime"] == "l1"):
        assert float(r["train_seconds"]) == stored["train_seconds"]

    before = (out / "results.csv").read_bytes()
    reproduce(out, "smoke", progress=False)  # in-process: saves an interpreter start
    assert (out / "results.csv").read_bytes() == before


def test_corrupt_checkpoint_is_moved_aside_and_retrained(smoke_run, tmp_path, capsys):
    out = tmp_path / "C"
    shutil.copytree(smoke_run, out)
    bad = out / "models" / "bimt" / "seed0" / "model.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    reproduce(out, "smoke", progress=False)
    kept = out / "models" / "bimt" / "seed0.corrupt-1" / "model.safetensors"
    assert kept.read_bytes() == b"this is not a safetensors file"
    assert "corrupt" in capsys.readouterr().err
    a, c = read_csv(smoke_run / "results.csv"), read_csv(out / "results.csv")
    assert _without(a, WALL_CLOCK_COLUMNS) == _without(c, WALL_CLOCK_COLUMNS)  # retrained to the same model


def test_directory_of_another_configuration_is_refused(smoke_run, tmp_path):
    out = tmp_path / "D"
    shutil.copytree(smoke_run, out)
    with pytest.raises(ValueError, match="another configuration"):
        reproduce(out, "smoke", seeds=2, progress=False)
    assert not (out / "models" / "l1" / "seed1").exists()


def test_local_executor_gives_the_same_results_as_inline(smoke_run, tmp_path):
    """``--executor local --jobs 2``: each model's job in a submitit subprocess, two at once. Every column of
    results.csv must equal the inline run's (``smoke_run``) except the wall-clock ones and ``training_jobs``
    (how many jobs ran at once: context for those wall-clock numbers)."""
    out = tmp_path / "J"
    proc = subprocess.run(_command(out) + ["--executor", "local", "--jobs", "2"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained l1 seed0" in proc.stderr and "trained bimt seed0" in proc.stderr
    assert list((out / "submitit").glob("*_log.out"))  # the jobs ran through submitit
    a, j = read_csv(smoke_run / "results.csv"), read_csv(out / "results.csv")
    assert {r["training_jobs"] for r in a} == {"1"} and {r["training_jobs"] for r in j} == {"2"}
    how = WALL_CLOCK_COLUMNS + ("training_jobs",)
    assert _without(a, how) == _without(j, how)
    assert "2 job(s) at once (executor local" in (out / "report.md").read_text()


def test_bad_jobs_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        reproduce(tmp_path / "bad", "smoke", jobs=0)
    assert not (tmp_path / "bad").exists()


def test_jobs_are_submitted_seed_major_so_load_changes_fall_on_every_regime():
    """Claim 3 compares wall-clock discovery times across regimes: within any window of len(regimes) consecutive
    jobs every regime appears once (regime-major order put each regime's jobs together in time)."""
    from hooked_bimt.study.reproduce import job_order

    regimes = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")
    order = job_order(regimes, 3)
    assert sorted(order) == sorted((r, s) for r in regimes for s in range(3))
    for start in range(len(order) - len(regimes) + 1):
        assert {r for r, _ in order[start:start + len(regimes)]} == set(regimes)
