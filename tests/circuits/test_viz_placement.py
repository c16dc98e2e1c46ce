"""circuit_graph(..., placement=...): the caller's positions and backdrop in the unit view, checked before drawing.

The expected page data is written out here from the placement given, not from the view's helpers.
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch

import circuits.viz as viz
from circuits import Circuit, graph_of
from circuits.viz import Backdrop, Placement
from hooked_bimt import HookedMLP
from hooked_bimt.zoo import HookedAttnOnly

DATA_RE = re.compile(r'<script type="application/json" class="hb-data">(.*?)</script>', re.S)
ATTN = HookedAttnOnly(2, 3, 16, 4, 6, 10)  # 2 layers, 3 heads


def embedded(view) -> dict:
    (found,) = DATA_RE.findall(view.page())
    return json.loads(found)


def circuit_of(model, seed: int = 0) -> Circuit:
    g = graph_of(model)
    rng = random.Random(seed)
    edges = rng.sample(list(g.edges()), g.n_edges // 2)
    return Circuit.from_edges(g, edges, effects={e: rng.uniform(-1, 1) for e in edges})


def unit_keys(model) -> list[tuple[str, int]]:
    """One key per unit: every sender node, and the receivers that are no sender's input (the output)."""
    g = graph_of(model)
    keys = [(h, i) for h in g.senders() for i in range(g.nodes[h].count)]
    return keys + [(r, i) for r in g.receivers() if r not in g.node_output for i in range(g.nodes[r].count)]


def a_placement(model, **kw) -> Placement:
    """Units on a diagonal; a backdrop of 5 points and 4 lines."""
    units = {k: (0.1 * n, 2.0 + n) for n, k in enumerate(unit_keys(model))}
    back = Backdrop(points=[[0, 0], [1, 0], [0.5, 1], [0.25, 3.5], [1, 4]], lines=[[0, 2], [1, 2], [2, 3], [3, 4]],
                    strength=[1.0, 0.5, 0.0, 0.25], sign=[1, -1, 0, 1], description="a test network")
    return Placement(**{"units": units, "backdrop": back, "row_labels": [(0.0, "bottom"), (4.0, "top")], **kw})


def test_page_keeps_the_given_positions_and_backdrop():
    p = a_placement(ATTN, pixels_per_unit=(400.0, 50.0))
    d = embedded(viz.circuit_graph(ATTN, circuit_of(ATTN), placement=p))
    pl = d["placement"]
    keys = unit_keys(ATTN)
    hooks = d["hooks"]
    by_key = {(hooks[h], i): xy for h, i, xy in zip(d["units"]["hook"], d["units"]["index"], pl["units_xy"])}
    assert by_key == {k: list(p.units[k]) for k in keys}
    assert pl["backdrop"]["points"] == [[0, 0], [1, 0], [0.5, 1], [0.25, 3.5], [1, 4]]
    assert (pl["backdrop"]["a"], pl["backdrop"]["b"]) == ([0, 1, 2, 3], [2, 2, 3, 4])
    assert pl["backdrop"]["strength"] == [1.0, 0.5, 0.0, 0.25] and pl["backdrop"]["sign"] == [1, -1, 0, 1]
    assert pl["row_labels"] == [[0.0, "bottom"], [4.0, "top"]]
    # screen positions: x = left + (x - x_min) * 400, y = height - bottom - (y - y_min) * 50
    f = pl["frame"]
    assert (f["x0"], f["y0"], f["sx"], f["sy"]) == (0.0, 0.0, 400.0, 50.0)
    for (x, y), (sx, sy) in zip(pl["units_xy"], d["units"]["xy"]):
        assert sx == pytest.approx(f["left"] + 400 * x, abs=0.01)
        assert sy == pytest.approx(f["height"] - f["bottom"] - 50 * y, abs=0.01)


def test_a_callable_placement_gets_the_model():
    seen = []

    def place(model):
        seen.append(model)
        return a_placement(model)

    d = embedded(viz.circuit_graph(ATTN, circuit_of(ATTN), placement=place))
    assert seen == [ATTN] and d["placement"]["backdrop"]["description"] == "a test network"


def test_without_placement_the_rows_stay():
    d = embedded(viz.circuit_graph(ATTN, circuit_of(ATTN)))
    assert d["placement"] is None


def test_page_with_a_backdrop_is_self_contained():
    html = viz.circuit_graph(ATTN, circuit_of(ATTN), placement=a_placement(ATTN)).page()
    assert not re.search(r"https?://|//cdn|\ssrc=", html)


def _units_without(model, drop):
    units = dict(a_placement(model).units)
    del units[drop]
    return units


@pytest.mark.parametrize("change, message", [
    (lambda p: {**p, "units": _units_without(ATTN, ("blocks.1.attn.hook_z", 2))},
     r"no position to 1 unit.*blocks\.1\.attn\.hook_z', 2"),
    (lambda p: {**p, "units": {**p["units"], ("blocks.0.attn.hook_z", 3): (0, 0)}}, r"not a node.*has 3 nodes"),
    (lambda p: {**p, "units": {**p["units"], ("blocks.7.nothing", 0): (0, 0)}}, "unknown hook"),
    (lambda p: {**p, "units": {**p["units"], ("blocks.0.attn.hook_z", 1): (float("nan"), 0)}}, "finite"),
    (lambda p: {**p, "units": {**p["units"], ("blocks.0.attn.hook_z", 1): (1, 2, 3)}}, r"\(x, y\) pair"),
    (lambda p: {**p, "units": {**p["units"], ("blocks.0.hook_q_input", 0): (-9, -9)}}, "two positions"),
    (lambda p: {**p, "backdrop": Backdrop([[0, 0]], [[0, 1]], [1.0], [1])}, r"index points 0\.\.0"),
    (lambda p: {**p, "backdrop": Backdrop([[0, 0], [1, 1]], [[0, 1]], [1.5], [1])}, r"in \[0, 1\]"),
    (lambda p: {**p, "backdrop": Backdrop([[0, 0], [1, 1]], [[0, 1]], [1.0], [2])}, "-1, 0 or 1"),
    (lambda p: {**p, "backdrop": Backdrop([[0, 0], [1, 1]], [[0, 1]], [1.0, 0.5], [1, 1])}, "one value per line"),
    (lambda p: {**p, "backdrop": Backdrop([[0, np.inf]], [], [], [])}, r"finite \(n, 2\)"),
    (lambda p: {**p, "backdrop": Backdrop([[0, 0], [1, 1]], [[0.0, 1.0]], [1.0], [1])}, "integer array"),
    (lambda p: {**p, "pixels_per_unit": (0.0, 10.0)}, "positive"),
    (lambda p: {**p, "row_labels": [(float("inf"), "x")]}, "finite"),
])
def test_bad_placements_are_refused_before_drawing(change, message):
    p = a_placement(ATTN)
    fields = change({"units": p.units, "backdrop": p.backdrop, "row_labels": p.row_labels})
    with pytest.raises(ValueError, match=message):
        viz.circuit_graph(ATTN, circuit_of(ATTN), placement=Placement(**fields))


def test_placement_of_the_wrong_type_or_model_is_refused():
    with pytest.raises(TypeError, match="Placement"):
        viz.circuit_graph(ATTN, circuit_of(ATTN), placement={"units": {}})
    with pytest.raises(TypeError, match="Placement"):
        viz.circuit_graph(ATTN, circuit_of(ATTN), placement=lambda m: {"units": {}})
    torch.manual_seed(0)
    mlp = HookedMLP((4, 3, 2))
    with pytest.raises(ValueError, match="unit view"):
        viz.circuit_graph(mlp, circuit_of(mlp), placement=a_placement(ATTN))
