"""circuits.viz.circuit_graph / neuron_activations: the page embeds the circuit, references nothing, fails clearly."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits.viz as viz
from circuits import Circuit, Edge, graph_of
from circuits.viz import data as vd
from circuits.viz.layout import bimt_layout, node_layout
from hooked_bimt import HookedMLP

DATA_RE = re.compile(r'<script type="application/json" class="hb-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def mnist_model() -> HookedMLP:
    torch.manual_seed(0)
    return HookedMLP((784, 100, 100, 10)).double()


@pytest.fixture(scope="module")
def circuit(mnist_model: HookedMLP) -> Circuit:
    g = graph_of(mnist_model)
    rng = random.Random(1)
    edges = rng.sample(list(g.edges()), 500)
    return Circuit.from_edges(g, edges, effects={e: rng.uniform(-1, 1) for e in edges[:400]})


def embedded(html: str) -> dict:
    found = DATA_RE.findall(html)
    assert len(found) == 1
    return json.loads(found[0])


def test_page_embeds_the_circuit(mnist_model, circuit):
    view = viz.circuit_graph(mnist_model, circuit)
    d = embedded(view.page())
    assert d["n_edges"] == circuit.n_edges == len(d["edges"]["s"]) == view.n_edges
    assert d["n_total_edges"] == 89_400
    W = [lin.weight.detach().numpy() for lin in mnist_model.linears]
    got = {}
    for l, s, r, w, e in zip(*(d["edges"][k] for k in ("layer", "s", "r", "w", "e"))):
        edge = Edge(mnist_model.layer_hook(l, "post"), s, mnist_model.layer_hook(l + 1, "pre"), r)
        got[edge] = (w, e)
        assert w == pytest.approx(W[l][r, s], rel=1e-5, abs=1e-12)
    assert set(got) == set(circuit.edges)
    for edge, (_, e) in got.items():
        if edge in circuit.effects:
            assert e == pytest.approx(circuit.effects[edge], rel=1e-5, abs=1e-12)
        else:
            assert e is None  # an edge without a recorded effect says so, it is not drawn as 0
    assert d["width_by"] == "effect" and d["has_effects"]
    assert d["labels"] == [str(c) for c in range(10)]


def test_page_references_nothing_external(mnist_model, circuit):
    page = viz.circuit_graph(mnist_model, circuit).page()
    for needle in ("http://", "https://", "//cdn", "src=", "url(", "@import", "<link", "fetch(", "XMLHttpRequest", "<iframe"):
        assert needle not in page, needle


def test_repr_html_needs_no_browser_and_no_network(mnist_model, circuit, monkeypatch):
    import circuitsvis.utils.render as cv_render

    def no_network(*args, **kwargs):
        raise AssertionError("the view tried to reach the network")

    monkeypatch.setattr(cv_render, "internet_on", no_network)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    view = viz.circuit_graph(mnist_model, circuit, title="T <x>")
    html = view._repr_html_()
    assert html == str(view) == view.show_code() == view.__html__()
    assert html.startswith('<div class="hb-circuit" id="hb-circuit-') and "hbCircuitGraph(" in html
    assert embedded(html)["title"] == "T <x>"  # '<' is escaped inside the JSON, so the script tag holds
    assert "<x>" not in html
    assert viz.circuit_graph(mnist_model, circuit)._repr_html_() != html  # unique ids: two views on a page


def test_save_writes_the_standalone_page(mnist_model, circuit, tmp_path):
    view = viz.circuit_graph(mnist_model, circuit, layout="layered", width_by="weight")
    out = view.save(tmp_path / "sub" / "view.html")
    text = out.read_text(encoding="utf-8")
    assert text == view.page() and text.startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in out.parent.iterdir()) == ["view.html"]  # no temporary file left behind
    d = embedded(text)
    assert d["layout"] == "layered" and d["width_by"] == "weight"


def test_background_is_the_full_network(mnist_model, circuit):
    d = embedded(str(viz.circuit_graph(mnist_model, circuit)))
    for lin, item in zip(mnist_model.linears, d["background"]):
        W = lin.weight.detach().numpy()
        assert np.abs(vd.dequantize_weights(item) - W).max() <= item["scale"] / 254 + 1e-12
    assert embedded(str(viz.circuit_graph(mnist_model, circuit, background=False)))["background"] is None


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.floats(1e-6, 1e3), st.integers(0, 2**31 - 1))
def test_quantized_weights_round_trip(rows, cols, scale, seed):
    W = np.random.default_rng(seed).normal(size=(rows, cols)) * scale
    item = vd.quantize_weights(W)
    back = vd.dequantize_weights(item)
    assert back.shape == W.shape
    assert np.abs(back - W).max() <= np.abs(W).max() / 254 * (1 + 1e-9)
    assert np.all(np.sign(back) * np.sign(W) >= 0)  # never flips a sign


def test_input_heat_sums_the_pixel_circuit_edges(mnist_model):
    g = graph_of(mnist_model)
    e1, e2, e3 = Edge("hook_in", 5, "blocks.0.hook_pre", 0), Edge("hook_in", 5, "blocks.0.hook_pre", 1), Edge("hook_in", 7, "blocks.0.hook_pre", 3)
    deep = Edge("blocks.0.hook_post", 5, "blocks.1.hook_pre", 2)  # index 5 of a hidden layer is not pixel 5
    c = Circuit.from_edges(g, [e1, e2, e3, deep], effects={e1: -0.5, e2: 0.25, e3: 2.0, deep: 9.0})
    W = mnist_model.linears[0].weight.detach().numpy()
    d = embedded(str(viz.circuit_graph(mnist_model, c)))
    heat_w, heat_e = np.array(d["heat"]["weight"]), np.array(d["heat"]["effect"])
    assert heat_w[5] == pytest.approx(abs(W[0, 5]) + abs(W[1, 5]), rel=1e-5)
    assert heat_w[7] == pytest.approx(abs(W[3, 7]), rel=1e-5)
    assert heat_e[5] == pytest.approx(0.75) and heat_e[7] == pytest.approx(2.0)
    assert np.count_nonzero(heat_w) == np.count_nonzero(heat_e) == 2
    assert [sum(m) for m in d["in_circuit"]] == [2, 4, 1, 0]


def test_no_effects_falls_back_to_weights(mnist_model):
    g = graph_of(mnist_model)
    c = Circuit.from_edges(g, [Edge("blocks.1.hook_post", 3, "hook_logits", 8)])
    d = embedded(str(viz.circuit_graph(mnist_model, c, output_labels=list("abcdefghij"))))
    assert d["width_by"] == "weight" and not d["has_effects"] and "effect" not in d["heat"]
    assert d["labels"][8] == "i"


def test_bimt_layout_draws_neurons_at_their_coordinates(mnist_model):
    """Positions are an invertible affine map of model.coords: solving it back recovers the coordinates."""
    lay = bimt_layout(mnist_model, (28, 28))
    for l in range(mnist_model.n_layers + 1):
        c = mnist_model.coords(l).detach().double().numpy()
        p = lay.positions[l]
        A = np.c_[c, np.ones(len(c))]
        fit, *_ = np.linalg.lstsq(A, p, rcond=None)
        assert np.allclose(A @ fit, p, atol=1e-8)
        assert abs(np.linalg.det(fit[:2])) > 1.0
    m = HookedMLP((784, 100, 100, 10))
    before = node_layout(m, "bimt").positions[0][[3, 40]].copy()
    m.swap_positions(0, 3, 40)
    assert np.allclose(node_layout(m, "bimt").positions[0][[40, 3]], before)


def test_layered_layout_is_columns_and_an_image(mnist_model):
    lay = node_layout(mnist_model, "layered", (28, 28))
    xs = [np.unique(p[:, 0]) for p in lay.positions]
    assert len(xs[0]) == 28 and all(len(x) == 1 for x in xs[1:])
    assert all(a.max() < b.min() for a, b in zip(xs, xs[1:]))
    assert np.all(np.diff(lay.positions[1][:, 1]) > 0)  # index order, top to bottom


def test_other_models_circuit_is_a_clear_error(mnist_model):
    small = HookedMLP((4, 3, 2))
    with pytest.raises(ValueError, match="does not belong to this model.*edges"):
        viz.circuit_graph(mnist_model, Circuit.full(graph_of(small)))
    n = graph_of(mnist_model).n_edges
    with pytest.raises(ValueError, match="blocks.7.hook_post"):
        viz.circuit_graph(mnist_model, Circuit(frozenset({Edge("blocks.7.hook_post", 0, "hook_logits", 0)}), n))
    with pytest.raises(ValueError, match="out of range"):
        viz.circuit_graph(mnist_model, Circuit(frozenset({Edge("blocks.1.hook_post", 100, "hook_logits", 0)}), n))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layout": "spring"}, "unknown layout"),
        ({"width_by": "gradient"}, "unknown width_by"),
        ({"input_shape": (27, 28)}, "input_shape"),
        ({"input_shape": (28,)}, "input_shape"),
        ({"output_labels": ["a", "b"]}, "output_labels"),
    ],
)
def test_bad_arguments_are_value_errors(mnist_model, circuit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.circuit_graph(mnist_model, circuit, **kwargs)


def test_wrong_types_are_type_errors(mnist_model, circuit):
    with pytest.raises(TypeError, match="Circuit"):
        viz.circuit_graph(mnist_model, {"edges": []})
    with pytest.raises(TypeError, match="declares no circuit graph"):
        viz.circuit_graph(torch.nn.Linear(3, 3), circuit)


def test_neuron_activations_are_circuitsvis_offline(mnist_model, circuit, monkeypatch):
    import circuitsvis.utils.render as cv_render

    monkeypatch.setattr(cv_render, "internet_on", lambda: pytest.fail("network probed"))
    clean, corrupted = torch.rand(6, 28, 28, dtype=torch.float64), torch.rand(4, 784, dtype=torch.float64)
    vis = viz.neuron_activations(mnist_model, circuit, clean, corrupted, max_examples=5, clean_labels=[8] * 6)
    html = vis._repr_html_()
    assert "CircuitsVis.render" in html and "TextNeuronActivations" in html and "unpkg.com" not in html
    props = html[html.index("TextNeuronActivations") :]
    assert "clean 4 (y=8)" in props and "corrupted 3" in props and "clean 5" not in props
    from circuits.viz.activations import circuit_hidden_neurons

    neurons = circuit_hidden_neurons(mnist_model, circuit)
    h, i = neurons[0]
    assert f"{h}[{i}]" in props
    _, cache = mnist_model.run_with_cache(clean[:1].reshape(1, -1))
    first = float(cache[h][0, i])
    assert f"{first:.4f}"[:6] in props  # the first clean activation of the first neuron is in the props
    with pytest.raises(ValueError, match="does not belong"):
        viz.neuron_activations(mnist_model, Circuit.full(graph_of(HookedMLP((4, 3, 2)))), clean, corrupted)


def test_save_never_replaces_an_existing_file_unless_asked(mnist_model, circuit, tmp_path):
    """A page saved earlier is the user's: ``save`` refuses it by name and leaves it byte for byte;
    ``overwrite=True`` replaces it."""
    path = tmp_path / "view.html"
    path.write_text("kept", encoding="utf-8")
    view = viz.circuit_graph(mnist_model, circuit)
    with pytest.raises(FileExistsError, match="view.html already exists; pass overwrite=True"):
        view.save(path)
    assert path.read_text(encoding="utf-8") == "kept"
    assert view.save(path, overwrite=True).read_text(encoding="utf-8") == view.page()
