"""The demo script and the notebook run in their quick form and show what they say."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parents[3] / "demos"


@pytest.fixture(autouse=True)
def quick(monkeypatch, tmp_path):
    monkeypatch.setenv("HOOKED_BIMT_QUICK", "1")
    monkeypatch.setenv("HOOKED_BIMT_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def test_demo_trains_finds_and_draws(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", [str(DEMOS / "bimt_transformer.py")])
    runpy.run_path(str(DEMOS / "bimt_transformer.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert float(re.search(r"accuracy ([0-9.]+)", out).group(1)) > 0.8
    kept, total = map(int, re.search(r"ACDC: (\d+) of (\d+) edges", out).groups())
    assert 0 < kept < total
    assert float(re.search(r"EAP-IG \(top \d+\): recovery ([-0-9.]+)", out).group(1)) > 0.5
    assert 0 < float(re.search(r"wiring length [0-9.]+, random placements [0-9.]+ \(ratio ([0-9.]+)\)", out).group(1)) < 1.5
    folder = tmp_path / "out" / "bimt_transformer"
    assert (folder / "network_vs_circuit.png").stat().st_size > 10_000
    page = (folder / "circuit.html").read_text()
    assert '"placement":{"frame":' in page and '"backdrop":{"points":' in page  # the circuit at BIMT positions


def test_notebook_cells_run(tmp_path):
    nb = json.loads((DEMOS / "bimt_transformer.ipynb").read_text())
    ns: dict = {"__name__": "__main__"}
    for cell in [c for c in nb["cells"] if c["cell_type"] == "code"]:
        exec(compile("".join(cell["source"]), "bimt_transformer.ipynb", "exec"), ns)
    assert ns["gap"] < 1e-10 and 0 < ns["acdc"].n_edges < ns["acdc"].n_total_edges
    assert (tmp_path / "out" / "bimt_transformer_notebook" / "network_vs_circuit.png").is_file()
    assert ns["view"].data["placement"]["backdrop"]["points"]
