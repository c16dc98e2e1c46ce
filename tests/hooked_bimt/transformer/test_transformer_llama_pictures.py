"""The pictures of a Llama-style BIMT module (4 query heads sharing 2 key/value groups): the wiring length equals a
re-computation from the state dict and ``llama``'s coordinates written out here, a swap of any kind is a re-placement
of the same weights (L moves exactly as the swapped neurons' positions do, E[L] not at all), the figure draws each
row's neurons at their coordinates and says so in its numbers, and the viewer places every node of the bridge's
circuit graph, the key/value groups' own nodes included."""

from __future__ import annotations

import copy
import json
import random
import re

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection

import circuits.viz as viz
from circuits import Circuit, graph_of
from hooked_bimt.transformer import (ModularAdditionTask, TrainConfig, swap_heads, swap_kv_groups, swap_mlp_neurons,
                                     swap_residual, train)
from hooked_bimt.transformer.figure import bimt_transformer_figure
from hooked_bimt.transformer.locality import locality
from hooked_bimt.transformer.viewer import bimt_placement

matplotlib.use("Agg")
D_MODEL, N_HEAD, N_KV, D_HEAD, D_MLP, N_LAYER = 8, 4, 2, 2, 16, 2
LLAMA = TrainConfig(arch="llama", d_model=D_MODEL, n_head=N_HEAD, d_mlp=D_MLP, steps=16, batch=16, swap_every=8,
                    lambda_=0.05, dtype="float64")
DATA_RE = re.compile(r'<script type="application/json" class="hb-data">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def trained():
    return train("bimt", ModularAdditionTask(p=7, n_prompts=8), LLAMA, seed=0)


def plain_maps(model):
    """(name, drawn weight out x in, out set, in set) per map, from the state dict; a set is (kind, layer, size)."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    vocab = sd["model.embed_tokens.weight"].shape[0]
    maps = [("embed", sd["model.embed_tokens.weight"].T, ("res", 0, D_MODEL), ("vocab", 0, vocab))]
    for l in range(N_LAYER):
        p = f"model.layers.{l}."
        ln1, ln2 = sd[p + "input_layernorm.weight"][None, :], sd[p + "post_attention_layernorm.weight"][None, :]
        w = {k: sd[f"{p}{k}.weight"] for k in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
        res, heads, kv = ("res", 0, D_MODEL), ("heads", l, N_HEAD * D_HEAD), ("kv", l, N_KV * D_HEAD)
        mlp = ("mlp", l, D_MLP)
        maps += [(f"blocks.{l}.attn.q", w["self_attn.q_proj"] * ln1, heads, res),
                 (f"blocks.{l}.attn.kv", np.abs(w["self_attn.k_proj"] * ln1) + np.abs(w["self_attn.v_proj"] * ln1),
                  kv, res),
                 (f"blocks.{l}.attn.out", w["self_attn.o_proj"], res, heads),
                 (f"blocks.{l}.mlp.gate_up", np.abs(w["mlp.gate_proj"] * ln2) + np.abs(w["mlp.up_proj"] * ln2), mlp,
                  res),
                 (f"blocks.{l}.mlp.down", w["mlp.down_proj"], res, mlp)]
    return maps + [("unembed", sd["lm_head.weight"] * sd["model.norm.weight"][None, :], ("vocab", 0, vocab),
                    ("res", 0, D_MODEL))]


def places(kind: str, n: int, k: int) -> list[int]:
    """Where neuron k can be moved: anywhere (residual, MLP), the same slot of any head or key/value group (query
    heads land on every head's block alike: groups move with their heads, heads within groups), nowhere (tokens)."""
    if kind == "vocab":
        return [k]
    if kind in ("heads", "kv"):
        return [g * D_HEAD + k % D_HEAD for g in range(n // D_HEAD)]
    return list(range(n))


def plain_locality(model, position=None) -> tuple[float, float, dict]:
    """L, E[L] and per map (L, E[L]) with neuron k of set s at position ``position[s][k]`` (default: k)."""
    position = position or {}
    num = den = expected = 0.0
    per_map = {}
    for name, w, out_set, in_set in plain_maps(model):
        a = np.abs(w) / np.abs(w).max()
        (ko, _, no), (ki, _, ni) = out_set, in_set
        po, pi = position.get(out_set[:2], np.arange(no)), position.get(in_set[:2], np.arange(ni))
        m_num = m_exp = 0.0
        for j in range(no):
            for i in range(ni):
                m_num += a[j, i] * abs((po[j] + 0.5) / no - (pi[i] + 0.5) / ni)
                m_exp += a[j, i] * np.mean([abs((p + 0.5) / no - (q + 0.5) / ni)
                                            for p in places(ko, no, j) for q in places(ki, ni, i)])
        per_map[name] = (m_num / a.sum(), m_exp / a.sum())
        num, expected, den = num + m_num, expected + m_exp, den + a.sum()
    return num / den, expected / den, per_map


def test_wiring_length_and_its_random_expectation_equal_the_formula(trained):
    loc = locality(trained.module, n_shuffles=0)
    length, expected, per_map = plain_locality(trained.module)
    assert loc.length == pytest.approx(length, rel=1e-12)
    assert loc.expected_random == pytest.approx(expected, rel=1e-12)
    assert list(loc.per_map) == list(per_map)
    for name, pair in per_map.items():
        assert loc.per_map[name] == pytest.approx(pair, rel=1e-12), name
    assert loc.n_weights == sum(w.size for _, w, _, _ in plain_maps(trained.module))


def exchange(position: np.ndarray, a, b) -> None:
    """The neurons now at positions ``a`` and ``b`` (equal-length lists) trade places."""
    was = position.copy()
    for x, y in zip(a, b):
        position[was == x], position[was == y] = y, x


def block(i: int, size: int) -> list[int]:
    return list(range(i * size, (i + 1) * size))


def test_a_swap_is_a_replacement_of_the_same_weights(trained):
    """L after swaps of every kind = L of the weights before them with the swapped neurons' positions exchanged
    (and not the L before: the swaps do move it); E[L] is unchanged."""
    original = trained.module
    model = copy.deepcopy(original)
    pos = {("res", 0): np.arange(D_MODEL), ("mlp", 1): np.arange(D_MLP), ("heads", 0): np.arange(N_HEAD * D_HEAD),
           ("heads", 1): np.arange(N_HEAD * D_HEAD), ("kv", 1): np.arange(N_KV * D_HEAD)}
    swap_residual(model, 0, 5)
    exchange(pos[("res", 0)], [0], [5])
    swap_mlp_neurons(model, 1, 2, 9)
    exchange(pos[("mlp", 1)], [2], [9])
    swap_heads(model, 0, 0, 1)  # the two query heads of group 0
    exchange(pos[("heads", 0)], block(0, D_HEAD), block(1, D_HEAD))
    swap_kv_groups(model, 1, 0, 1)  # groups 0 and 1 with their query heads 0, 1 and 2, 3
    exchange(pos[("kv", 1)], block(0, D_HEAD), block(1, D_HEAD))
    exchange(pos[("heads", 1)], block(0, 2 * D_HEAD), block(1, 2 * D_HEAD))
    swap_residual(model, 5, 3)  # a second swap of one set composes
    exchange(pos[("res", 0)], [5], [3])
    after = locality(model, n_shuffles=0)
    moved, _, per_map = plain_locality(original, pos)
    assert after.length == pytest.approx(moved, rel=1e-12)
    for name, (l_m, _) in per_map.items():
        assert after.per_map[name][0] == pytest.approx(l_m, rel=1e-12), name
    before = locality(original, n_shuffles=0)
    assert abs(after.length - before.length) > 1e-6
    assert after.expected_random == pytest.approx(before.expected_random, rel=1e-12)


def test_random_placements_average_to_the_expectation(trained):
    loc = locality(trained.module, n_shuffles=600, seed=3)
    assert abs(loc.shuffled.mean() - loc.expected_random) < 4 * loc.shuffled.std() / np.sqrt(600)
    np.testing.assert_array_equal(loc.shuffled, locality(trained.module, n_shuffles=600, seed=3).shuffled)


def row_heights(vocab: int) -> dict[float, int]:
    """Height -> number of neurons on that row: tokens, residual, per block key/value (half-way below its heads),
    heads, residual, MLP, residual."""
    out = {0.0: vocab, 1.0: D_MODEL, 2.0 + 4 * N_LAYER: vocab}
    for l in range(N_LAYER):
        base = 1 + 4 * l
        out.update({base + 0.5: N_KV * D_HEAD, base + 1.0: N_HEAD * D_HEAD, base + 2.0: D_MODEL, base + 3.0: D_MLP,
                    base + 4.0: D_MODEL})
    return out


@pytest.fixture(scope="module")
def circuit(trained):
    """30 random edges and every edge into the key/value groups of layer 1."""
    g = graph_of(trained.bridge)
    edges = list(g.edges())
    grouped = [e for e in edges if e.receiver in ("blocks.1.attn.hook_k_input", "blocks.1.attn.hook_v_input")]
    picked = sorted(set(random.Random(0).sample(edges, 30)) | set(grouped))
    return Circuit.from_edges(g, picked, effects={e: 1.0 for e in picked})


def scattered(ax) -> np.ndarray:
    """Every point drawn as a marker on ``ax`` (the neurons, the circuit's nodes), as (x, y) rows."""
    return np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])


def test_the_figure_draws_every_neuron_and_prints_the_numbers(trained, circuit, tmp_path):
    fig = bimt_transformer_figure(trained.module, circuit, tmp_path / "llama.png", n_shuffles=20)
    assert (tmp_path / "llama.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    net, panel = fig.axes
    points = scattered(net)
    heights, counts = np.unique(points[:, 1], return_counts=True)
    rows = row_heights(trained.module.config.vocab_size)
    assert dict(zip(heights.tolist(), counts.tolist())) == rows
    for y, n in rows.items():
        np.testing.assert_allclose(np.sort(points[points[:, 1] == y, 0]), (np.arange(n) + 0.5) / n, atol=1e-15)
    caption = fig.texts[0].get_text()
    drawn = int(re.search(r"the ([0-9,]+) weights with a", caption).group(1).replace(",", ""))
    assert drawn == sum(int((np.abs(w) >= 0.15 * np.abs(w).max()).sum()) for _, w, _, _ in plain_maps(trained.module))
    beside = [float(t.get_text().split()[-1]) for t in net.texts if t.get_text().startswith("L/E[L]")]
    assert beside == [round(l_m / e_m, 2) for l_m, e_m in plain_locality(trained.module)[2].values()]
    assert len(net.patches) == N_LAYER * (N_HEAD + N_KV)  # a block per head and per key/value group
    assert any(p.get_edgecolor()[3] > 0 for p in net.patches[N_HEAD:N_HEAD + N_KV] + net.patches[-N_KV:])
    nodes = scattered(panel)
    on_kv_rows = np.isin(nodes[:, 1], [1.5 + 4 * l for l in range(N_LAYER)])
    assert on_kv_rows.sum() == N_LAYER * N_KV * 2  # the k and v node of every group
    assert len(nodes) == N_LAYER * (N_HEAD + 2 * N_KV + 1) + 2


def test_the_viewer_places_every_node_the_grouped_ones_on_their_row(trained, circuit, tmp_path):
    view = viz.circuit_graph(trained.bridge, circuit, placement=bimt_placement(trained.module, min_weight=0.0))
    page = view.save(tmp_path / "llama.html")
    (payload,) = DATA_RE.findall(page.read_text())
    data = json.loads(payload)
    hooks, units = data["hooks"], data["units"]
    xys = data["placement"]["units_xy"]
    placed = {(hooks[h], i): tuple(xy) for h, i, xy in zip(units["hook"], units["index"], xys)}
    for l in range(N_LAYER):
        for g in range(N_KV):
            assert placed[(f"blocks.{l}.attn.hook_k_input", g)] == pytest.approx(((g + 0.25) / N_KV, 1.5 + 4 * l))
            assert placed[(f"blocks.{l}.attn.hook_v_input", g)] == pytest.approx(((g + 0.75) / N_KV, 1.5 + 4 * l))
        for h in range(N_HEAD):
            assert placed[(f"blocks.{l}.attn.hook_result", h)] == pytest.approx(((h + 0.5) / N_HEAD, 2.0 + 4 * l))
    assert len(placed) == 2 + N_LAYER * (N_HEAD + 2 * N_KV + 1)  # every unit of the graph
    assert len(data["placement"]["backdrop"]["points"]) == sum(row_heights(trained.module.config.vocab_size).values())
