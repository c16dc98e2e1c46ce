"""The offline viewer at BIMT positions: the page's neurons sit at SPEC 8's coordinates (written out here), its
lines carry the weights of a shuffled model where the swaps put them, the page needs no network, and a broken
placement is refused before anything is drawn."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import re

import numpy as np
import pytest
from gpt2_fixtures import tiny_gpt2

import circuits.viz as viz
from circuits import Circuit, graph_of
from circuits.viz import browser
from hooked_bimt.transformer import swap_heads, swap_mlp_neurons, swap_residual, to_bridge
from hooked_bimt.transformer.viewer import bimt_placement

DATA_RE = re.compile(r'<script type="application/json" class="hb-data">(.*?)</script>', re.S)
D_MODEL, N_HEAD, D_MLP, VOCAB, N_LAYER = 8, 2, 12, 11, 2
ROWS = ["vocab_in", "res0", "attn0", "mid0", "mlp0", "res1", "attn1", "mid1", "mlp1", "res2", "vocab_out"]


def size_of(row: str) -> int:
    return VOCAB if row.startswith("vocab") else D_MLP if row.startswith("mlp") else D_MODEL


def first_point(row: str) -> int:
    return sum(size_of(r) for r in ROWS[:ROWS.index(row)])


@pytest.fixture(scope="module")
def shuffled():
    """(original, shuffled copy, bridge of the copy, circuit, page data): residual 0 <-> 5, MLP 0 neurons 1 <-> 3,
    layer 1 heads 0 <-> 1."""
    original = tiny_gpt2(2)
    model = copy.deepcopy(original)
    swap_residual(model, 0, 5)
    swap_mlp_neurons(model, 0, 1, 3)
    swap_heads(model, 1, 0, 1)
    bridge = to_bridge(model)
    g = graph_of(bridge)
    rng = random.Random(0)
    edges = rng.sample(list(g.edges()), 30)
    circuit = Circuit.from_edges(g, edges, effects={e: rng.uniform(-1, 1) for e in edges})
    view = viz.circuit_graph(bridge, circuit, placement=bimt_placement(model, min_weight=0.0))
    (payload,) = DATA_RE.findall(view.page())
    return original, model, bridge, circuit, json.loads(payload), view


def test_every_neuron_sits_at_its_spec8_coordinate(shuffled):
    *_, data, _ = shuffled
    points = np.array(data["placement"]["backdrop"]["points"])
    expected = [((i + 0.5) / size_of(row), float(y)) for y, row in enumerate(ROWS) for i in range(size_of(row))]
    np.testing.assert_allclose(points, np.array(expected), rtol=0, atol=1e-15)


def test_units_sit_on_their_rows_heads_at_their_blocks(shuffled):
    *_, data, _ = shuffled
    hooks, U = data["hooks"], data["units"]
    placed = {(hooks[h], i): tuple(xy) for h, i, xy in zip(U["hook"], U["index"], data["placement"]["units_xy"])}
    expected = {("embed.hook_out", 0): (0.5, 0.5), ("blocks.1.hook_out", 0): (0.5, 9.5)}
    for l in range(N_LAYER):
        expected.update({(f"blocks.{l}.attn.hook_result", h): ((h + 0.5) / N_HEAD, 2.0 + 4 * l) for h in range(N_HEAD)})
        expected[(f"blocks.{l}.mlp.hook_out", 0)] = (0.5, 4.0 + 4 * l)
    assert placed.keys() == expected.keys()
    for key, xy in expected.items():
        assert placed[key] == pytest.approx(xy, abs=1e-15), key


def line_strengths(data) -> dict[tuple[int, int], tuple[float, int]]:
    B = data["placement"]["backdrop"]
    return {(a, b): (s, g) for a, b, s, g in zip(B["a"], B["b"], B["strength"], B["sign"])}


def test_lines_carry_the_weights_the_swaps_moved_there(shuffled):
    """Read against the *unshuffled* module: position p of the residual holds dimension 5 if p == 0, ..."""
    original, *_, data, _ = shuffled
    lines = line_strengths(data)
    res = {0: 5, 5: 0}
    w_e = original.transformer.wte.weight.detach().numpy()  # (vocab x d_model)
    for t in range(VOCAB):
        for p in range(D_MODEL):
            w = w_e[t, res.get(p, p)]
            s, g = lines[(first_point("vocab_in") + t, first_point("res0") + p)]
            assert s == pytest.approx(abs(w) / np.abs(w_e).max(), abs=1e-4) and g == np.sign(w)
    w_o = original.transformer.h[1].attn.c_proj.weight.detach().numpy()  # (head dims x d_model), heads 0, 1 swapped
    head = {0: 1, 1: 0}
    for k in range(D_MODEL):
        src = head[k // 4] * 4 + k % 4
        for p in range(D_MODEL):
            w = w_o[src, res.get(p, p)]
            s, g = lines[(first_point("attn1") + k, first_point("mid1") + p)]
            assert s == pytest.approx(abs(w) / np.abs(w_o).max(), abs=1e-4) and g == np.sign(w)
    w_mo = original.transformer.h[0].mlp.c_proj.weight.detach().numpy()  # (d_mlp x d_model), neurons 1, 3 swapped
    mlp = {1: 3, 3: 1}
    for n in range(D_MLP):
        for p in range(D_MODEL):
            w = w_mo[mlp.get(n, n), res.get(p, p)]
            s, _ = lines[(first_point("mlp0") + n, first_point("res1") + p)]
            assert s == pytest.approx(abs(w) / np.abs(w_mo).max(), abs=1e-4)


def test_page_needs_nothing_from_the_network(shuffled):
    *_, view = shuffled
    assert not re.search(r"https?://|//cdn|\ssrc=", view.page())


def test_a_broken_placement_is_refused_before_drawing(shuffled):
    _, model, bridge, circuit, *_ = shuffled
    good = bimt_placement(model)
    units = dict(good.units)
    del units[("blocks.0.attn.hook_result", 1)]
    with pytest.raises(ValueError, match=r"no position to 1 unit.*blocks\.0\.attn\.hook_result', 1"):
        viz.circuit_graph(bridge, circuit, placement=dataclasses.replace(good, units=units))
    back = dataclasses.replace(good.backdrop, strength=good.backdrop.strength * 2)
    with pytest.raises(ValueError, match=r"strength must be finite numbers in \[0, 1\]"):
        viz.circuit_graph(bridge, circuit, placement=dataclasses.replace(good, backdrop=back))
    with pytest.raises(ValueError, match="min_weight"):
        bimt_placement(model, min_weight=1.0)


@pytest.mark.browser
@pytest.mark.skipif(browser.find_chromium() is None, reason="headless Chromium not found (`make browser`)")
def test_browser_draws_the_network_and_the_circuit_offline(shuffled, tmp_path):
    *_, circuit, data, view = shuffled
    page = view.save(tmp_path / "bimt.html")
    probe = """<script>(function () { var root = document.querySelector(".hb-circuit");
      root.querySelector("button.hb-backdrop").click();
      root.setAttribute("data-test-hidden", root.querySelector("canvas.hb-bg").style.display); })();</script></body>"""
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", probe, 1))
    dom = browser.dump_dom(probed)

    def attr(name):
        (v,) = re.findall(rf'class="hb-circuit[^"]*"[^>]*\s{name}="([^"]*)"', dom)
        return v

    n_lines = sum(s > 0 for s in data["placement"]["backdrop"]["strength"])
    assert int(attr("data-backdrop-lines")) == n_lines > 0
    assert int(attr("data-backdrop-points")) == sum(size_of(r) for r in ROWS)
    assert int(attr("data-edges-drawn")) == circuit.n_edges
    assert int(attr("data-units-drawn")) == 2 + N_LAYER * (N_HEAD + 1)
    assert attr("data-resources") == "0"
    assert attr("data-test-hidden") == "none" and attr("data-backdrop-shown") == "0"
