"""circuits.viz static figures: LineCollections, colours by sign, full MNIST network written fast, clear errors."""

from __future__ import annotations

import random
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import circuits.viz as viz  # noqa: E402
from circuits import Circuit, Edge, graph_of  # noqa: E402
from circuits.viz.static import NEG, POS  # noqa: E402
from hooked_bimt import HookedMLP  # noqa: E402


@pytest.fixture(scope="module")
def mnist_model() -> HookedMLP:
    torch.manual_seed(0)
    return HookedMLP((784, 100, 100, 10))


@pytest.fixture(scope="module")
def circuit(mnist_model) -> Circuit:
    g = graph_of(mnist_model)
    edges = random.Random(0).sample(list(g.edges()), 400)
    return Circuit.from_edges(g, edges)


def line_collections(ax) -> list[LineCollection]:
    return [c for c in ax.collections if isinstance(c, LineCollection)]


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_network_vs_circuit_full_mnist_within_budget(mnist_model, circuit, tmp_path, ext):
    path = tmp_path / f"fig.{ext}"
    """Budget: 8 s of this process's CPU time, building and saving (wall time on a shared, loaded
    machine can be longer than the work itself; the CPU time is the work). Nearly all of it is matplotlib's Agg
    drawing ~87,000 segments: 5.2-5.7 s on the 2-core CI VM on 2026-12-06 for both this commit and 9665417 (the
    old 5 s budget failed on both); a per-edge Python loop in our code would cost far more than the margin."""
    t0, w0 = time.process_time(), time.perf_counter()
    fig = viz.network_vs_circuit(mnist_model, circuit, path)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    plt.close(fig)
    data = path.read_bytes()
    print(f"network_vs_circuit {ext}: {cpu:.2f} s CPU, {wall:.2f} s wall")
    assert cpu < 8.0, f"network_vs_circuit took {cpu:.2f} s of CPU ({wall:.2f} s wall)"
    assert len(data) > 10_000
    assert data.startswith(b"\x89PNG") if ext == "png" else b"<svg" in data[:2000]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic: no temporary file left


def test_full_network_is_one_line_collection(mnist_model):
    fig, ax = plt.subplots()
    viz.draw_network(mnist_model, ax=ax)
    (lc,) = line_collections(ax)
    W = np.concatenate([lin.weight.detach().numpy().ravel() for lin in mnist_model.linears])
    visible = np.abs(W) / np.abs(W).max() >= 0.01  # fainter than 1/255 opacity is left out
    assert len(lc.get_segments()) == visible.sum() > 80_000
    assert lc.get_rasterized()
    plt.close(fig)


def test_circuit_edges_coloured_by_the_weight_sign_whatever_sets_the_width(mnist_model):
    W = mnist_model.linears[2].weight.detach()
    pos = [(j, i) for j in range(10) for i in range(100) if W[j, i] > 0][:3]
    neg = [(j, i) for j in range(10) for i in range(100) if W[j, i] < 0][:2]
    edges = [Edge("blocks.1.hook_post", i, "hook_logits", j) for j, i in pos + neg]
    c = Circuit.from_edges(graph_of(mnist_model), edges, effects={e: -1.0 for e in edges})
    for width_by, n_blue in (("weight", 3), ("effect", 3)):  # effects all negative: colour still by weight
        fig, ax = plt.subplots()
        viz.draw_network(mnist_model, c, ax, width_by=width_by)
        (lc,) = line_collections(ax)
        rgb = lc.get_colors()[:, :3]
        assert len(rgb) == 5
        assert sum(np.allclose(x, to_rgba(POS)[:3]) for x in rgb) == n_blue
        assert sum(np.allclose(x, to_rgba(NEG)[:3]) for x in rgb) == 5 - n_blue
        plt.close(fig)


def test_circuit_drawing_fades_outside_neurons(mnist_model, circuit):
    fig, ax = plt.subplots()
    viz.draw_network(mnist_model, circuit, ax, background=True)
    assert len(line_collections(ax)) == 2  # faint full network + the circuit
    faded = [c for c in ax.collections if not isinstance(c, LineCollection) and len(c.get_offsets())
             and np.allclose(c.get_facecolors()[0][:3], to_rgba("#dddddd")[:3])]
    n_out_hidden = sum(
        100 - len({i for h, i in circuit.nodes() if h.startswith(f"blocks.{k}.")}) for k in range(2)
    )
    assert sum(len(c.get_offsets()) for c in faded[1:3]) == n_out_hidden
    plt.close(fig)


def test_bad_input(mnist_model, circuit, tmp_path):
    other = Circuit.full(graph_of(HookedMLP((4, 3, 2))))
    with pytest.raises(ValueError, match="does not belong"):
        viz.draw_network(mnist_model, other)
    with pytest.raises(ValueError, match="does not belong"):
        viz.network_vs_circuit(mnist_model, other)
    with pytest.raises(ValueError, match="format"):
        viz.network_vs_circuit(mnist_model, circuit, tmp_path / "fig.jpg")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown layout"):
        viz.draw_network(mnist_model, layout="circle")
    with pytest.raises(ValueError, match="unknown width_by"):
        viz.draw_network(mnist_model, circuit, width_by="size")
    with pytest.raises(ValueError, match="unknown layout"):
        viz.network_vs_circuit(mnist_model, circuit, tmp_path / "f.png", layout="circle")
    with pytest.raises(TypeError, match="HookedMLP"):
        viz.draw_network(torch.nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())


def test_empty_circuit_draws_the_network_and_no_circuit_edge(tmp_path):
    """ACDC can prune everything at a high threshold; the figure must still be written."""
    torch.manual_seed(0)
    model = HookedMLP((16, 9, 4))
    empty = Circuit.empty(graph_of(model))
    fig = viz.network_vs_circuit(model, empty, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0
    circuit_ax = fig.axes[1]
    drawn = sum(len(c.get_segments()) for c in circuit_ax.collections if isinstance(c, LineCollection))
    assert drawn == 0
    plt.close(fig)
    page = viz.circuit_graph(model, empty, input_shape=(4, 4))
    assert page.n_edges == 0 and "<svg" in page.page()


def test_network_vs_circuit_draws_the_circuit_as_a_subset_of_the_network():
    """Same scale and style in both panels: each circuit line is exactly its full-network line."""
    torch.manual_seed(1)
    model = HookedMLP((16, 9, 4))
    g = graph_of(model)
    edges = random.Random(1).sample(list(g.edges()), 30)
    fig = viz.network_vs_circuit(model, Circuit.from_edges(g, edges))

    def drawn(ax):
        out = {}
        for lc in line_collections(ax):
            for seg, lw, col in zip(lc.get_segments(), lc.get_linewidths(), lc.get_colors()):
                out[tuple(np.round(seg, 6).ravel())] = (float(lw), tuple(np.round(col, 6)))
        return out

    full, circ = drawn(fig.axes[0]), drawn(fig.axes[1])
    assert len(full) == g.n_edges and len(circ) == 30
    for seg, style in circ.items():
        assert full[seg] == style
    plt.close(fig)


def test_figure_never_replaces_an_existing_file_unless_asked(mnist_model, circuit, tmp_path):
    """An existing figure file is refused before anything is drawn and kept byte for byte; ``overwrite=True``
    replaces it."""
    path = tmp_path / "fig.png"
    path.write_bytes(b"kept")
    figures = len(plt.get_fignums())
    with pytest.raises(FileExistsError, match="fig.png already exists; pass overwrite=True"):
        viz.network_vs_circuit(mnist_model, circuit, path)
    assert path.read_bytes() == b"kept" and len(plt.get_fignums()) == figures  # refused before drawing
    plt.close(viz.network_vs_circuit(mnist_model, circuit, path, overwrite=True))
    assert path.read_bytes().startswith(b"\x89PNG")
