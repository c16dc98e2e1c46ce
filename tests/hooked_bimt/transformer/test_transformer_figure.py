"""The BIMT transformer figure: rows and positions as documented, files written only where asked."""

from __future__ import annotations

import pytest
from gpt2_fixtures import tiny_gpt2

from hooked_bimt.transformer.figure import bimt_transformer_figure, rows_of


def test_rows_run_bottom_to_top_through_every_block():
    rows = rows_of(2)
    assert [k for k, _ in sorted(rows.items(), key=lambda kv: kv[1])] == [
        "vocab_in", "res0", "attn0", "mid0", "mlp0", "res1", "attn1", "mid1", "mlp1", "res2", "vocab_out"]


def test_figure_draws_every_map_and_refuses_to_overwrite(tmp_path):
    model = tiny_gpt2()
    fig = bimt_transformer_figure(model, None, tmp_path / "net.png", min_weight=0.0)
    n_maps = 2 + 4 * 2
    assert len(fig.axes[0].collections) >= n_maps  # one line collection per penalised map, then the neurons
    assert (tmp_path / "net.png").stat().st_size > 5_000
    with pytest.raises(FileExistsError):
        bimt_transformer_figure(model, None, tmp_path / "net.png")
    with pytest.raises(ValueError, match="format"):
        bimt_transformer_figure(model, None, tmp_path / "net.gif")
