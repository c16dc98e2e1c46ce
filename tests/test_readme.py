"""The README's Python examples run as written (a user copies them first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_and_reruns(index, tmp_path, monkeypatch, capsys):
    """Run as a second time: every file the example saves is already there (a stale copy), and is replaced."""
    monkeypatch.chdir(tmp_path)  # examples may save files
    saved = [tmp_path / name for name in re.findall(r"\.save\(\"([^\"]+)\"", BLOCKS[index])]
    for path in saved:
        path.write_text("stale: from the first run")
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip(), "an example should print what it shows"
    assert all(path.read_text() != "stale: from the first run" for path in saved)
