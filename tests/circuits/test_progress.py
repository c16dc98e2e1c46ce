"""Issue 24: progress bars in a notebook without ipywidgets refresh rarely (a notebook keeps every refresh)."""

from __future__ import annotations

import io
import sys
import time
import types

import pytest

from circuits import progress


class _Kernel:
    config = {"IPKernelApp": {}}


@pytest.fixture
def notebook(monkeypatch):
    """This process looks like a Jupyter kernel (tqdm.autonotebook's own test)."""
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: _Kernel()))


def _refreshes(bar_factory) -> int:
    out = io.StringIO()
    for _ in bar_factory(range(40), file=out, mininterval=0.1):
        time.sleep(0.01)
    return out.getvalue().count("\r")


def test_the_terminal_is_detected_as_no_notebook():
    assert not progress.in_notebook()


def test_a_text_bar_in_a_notebook_without_widgets_writes_only_its_first_and_last_state(notebook, monkeypatch):
    monkeypatch.setattr(progress, "has_widgets", lambda: False)
    assert progress.in_notebook()
    bar = progress.progress_bar(range(3), file=io.StringIO())
    assert type(bar).__module__ == "tqdm.std" and bar.mininterval >= progress.NOTEBOOK_TEXT_INTERVAL
    bar.close()
    from tqdm.std import tqdm

    assert _refreshes(tqdm) >= 3  # the plain bar refreshes every 0.1 s over the 0.4 s loop
    assert _refreshes(progress.progress_bar) <= 2  # ours: the start and the end


def test_with_widgets_the_notebook_bar_is_tqdm_auto(notebook, monkeypatch):
    pytest.importorskip("ipywidgets")
    bar = progress.progress_bar(range(3))
    assert type(bar).__module__ == "tqdm.notebook"
    bar.close()


def test_the_demo_notebooks_keep_no_progress_bar_refreshes():
    """The notebooks in demos/ as committed: small, and no output stream holding a text bar's refreshes."""
    import json
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[2] / "demos").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        assert path.stat().st_size < 100_000, path
        for cell in json.loads(path.read_text())["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", []))
                assert text.count("\r") <= 2, (path.name, text[:200])
