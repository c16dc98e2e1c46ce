"""``benchmarks/ab_commits.py`` refuses what it cannot time, naming it, before any worktree or run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ab_commits.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _worktrees() -> str:
    return subprocess.run(["git", "-C", str(SCRIPT.parent), "worktree", "list"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("args, message", [
    (["no-such-commit-abc", "HEAD"], "not a commit of this repository: 'no-such-commit-abc'"),
    (["HEAD", "HEAD"], "each commit once"),
    (["--repeats", "0", "HEAD"], "--repeats must be at least 1"),
])
def test_bad_commits_are_refused_before_any_work(args, message):
    before = _worktrees()
    run = _run(*args)
    assert run.returncode != 0
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert _worktrees() == before
