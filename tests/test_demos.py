"""Every demo runs in its quick form (HOOKED_BIMT_QUICK=1): the scripts in-process, the notebook's code cells
executed from its JSON in one namespace (no Jupyter needed)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

DEMOS = Path(__file__).resolve().parents[1] / "demos"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def quick(monkeypatch, tmp_path):
    monkeypatch.setenv("HOOKED_BIMT_QUICK", "1")
    monkeypatch.setenv("HOOKED_BIMT_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _run_script(name: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(DEMOS / name), *args])
    runpy.run_path(str(DEMOS / name), run_name="__main__")


def test_train_one_saves_a_loadable_model(monkeypatch, tmp_path, capsys):
    from hooked_bimt import TrainResult

    _run_script("train_one.py", ["--regime", "bimt", "--out", str(tmp_path / "m")], monkeypatch)
    out = capsys.readouterr().out
    assert "test accuracy" in out and "blocks.0.hook_post" in out
    assert TrainResult.load(tmp_path / "m").regime.name == "bimt"


def test_find_8v3_circuit_prints_and_saves_it(monkeypatch, tmp_path, capsys):
    from circuits import Circuit

    _run_script("find_8v3_circuit.py", ["--out", str(tmp_path / "c.json")], monkeypatch)
    out = capsys.readouterr().out
    c = Circuit.load(tmp_path / "c.json")
    assert f"circuit: {c.n_edges} of {c.n_total_edges} edges" in out and "logit gap" in out


def test_compare_regimes_prints_both(monkeypatch, capsys):
    _run_script("compare_regimes.py", ["--regimes", "vanilla", "bimt"], monkeypatch)
    out = capsys.readouterr().out
    assert "vanilla" in out and "bimt" in out and "edge sparsity" in out


def test_walkthrough_notebook_cells_run(tmp_path):
    nb = json.loads((DEMOS / "walkthrough.ipynb").read_text())
    ns: dict = {"__name__": "__main__"}
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 5
    for cell in cells:
        exec(compile("".join(cell["source"]), "walkthrough.ipynb", "exec"), ns)
    assert ns["circuit"].n_total_edges > 0 and "hook_logits" in ns["cache"]
    assert (tmp_path / "out" / "circuit_8v3.html").stat().st_size > 0
    assert (tmp_path / "out" / "network_vs_circuit.png").stat().st_size > 0


@pytest.mark.parametrize("name", ["residual_mlp.py", "attention_only.py"])
def test_beyond_the_mlp_demos_train_and_find_a_circuit(name, monkeypatch, capsys):
    """Issue 6's demos: train a toy model, run ACDC on its declared graph, compare with attribution."""
    import re

    _run_script(name, [], monkeypatch)
    out = capsys.readouterr().out
    acc = float(re.search(r"trained: accuracy ([0-9.]+)", out).group(1))
    kept, total = map(int, re.search(r"ACDC: (\d+) of (\d+) edges", out).groups())
    assert acc >= 0.9 and 0 < kept < total


def test_induction_demo_finds_and_draws_the_circuit(monkeypatch, tmp_path, capsys):
    """Issue 11 item 6: the shipped induction model, ACDC + EAP-IG on its bridge, views saved."""
    import re

    _run_script("induction_circuit.py", ["--out", str(tmp_path / "ind")], monkeypatch)
    out = capsys.readouterr().out
    assert re.search(r"ACDC: \d+ of 110 edges", out) and "EAP-IG: known edge ranked" in out
    assert (tmp_path / "ind" / "induction_acdc.html").stat().st_size > 0
    assert (tmp_path / "ind" / "induction_eap_ig.html").stat().st_size > 0


def test_induction_notebook_cells_run(tmp_path):
    nb = json.loads((DEMOS / "induction.ipynb").read_text())
    ns: dict = {"__name__": "__main__"}
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in cells:
        exec(compile("".join(cell["source"]), "induction.ipynb", "exec"), ns)
    assert ns["found"].n_total_edges == 110 and ns["view"].n_edges == ns["found"].n_edges
    assert (tmp_path / "out" / "induction" / "induction_acdc.html").stat().st_size > 0
