"""The wiring length printed under the BIMT transformer figure, against a plain re-computation written out here."""

from __future__ import annotations

import re

import matplotlib
import numpy as np
import pytest
from gpt2_fixtures import tiny_gpt2

from hooked_bimt.transformer import swap_heads, swap_mlp_neurons, swap_residual
from hooked_bimt.transformer.figure import bimt_transformer_figure
from hooked_bimt.transformer.locality import locality

matplotlib.use("Agg")


def plain_maps(model):
    """(name, effective weight out x in, out set, in set) per map; a set is (kind, size) with kind res/heads/mlp/vocab."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    vocab, d = sd["transformer.wte.weight"].shape
    d_mlp = sd["transformer.h.0.mlp.c_fc.weight"].shape[1]
    maps = [("embed", sd["transformer.wte.weight"].T, ("res", d), ("vocab", vocab))]
    for l in range(model.config.n_layer):
        p = f"transformer.h.{l}."
        qkv = sd[p + "attn.c_attn.weight"].T * sd[p + "ln_1.weight"][None, :]
        folded = np.abs(qkv[:d]) + np.abs(qkv[d:2 * d]) + np.abs(qkv[2 * d:])
        maps += [(f"blocks.{l}.attn.qkv", folded, ("heads", d), ("res", d)),
                 (f"blocks.{l}.attn.out", sd[p + "attn.c_proj.weight"].T, ("res", d), ("heads", d)),
                 (f"blocks.{l}.mlp.in", sd[p + "mlp.c_fc.weight"].T * sd[p + "ln_2.weight"][None, :], ("mlp", d_mlp),
                  ("res", d)),
                 (f"blocks.{l}.mlp.out", sd[p + "mlp.c_proj.weight"].T, ("res", d), ("mlp", d_mlp))]
    return maps + [("unembed", sd["lm_head.weight"] * sd["transformer.ln_f.weight"][None, :], ("vocab", vocab),
                    ("res", d))]


def places(kind: str, n: int, k: int, d_head: int) -> list[int]:
    """Where neuron k of a set can be moved: anywhere (residual, MLP), the same slot of any head, nowhere (tokens)."""
    if kind == "vocab":
        return [k]
    if kind == "heads":
        return [g * d_head + k % d_head for g in range(n // d_head)]
    return list(range(n))


def plain_locality(model) -> tuple[float, float, dict]:
    d_head = model.config.n_embd // model.config.n_head
    num = den = expected = 0.0
    per_map = {}
    for name, w, (ko, no), (ki, ni) in plain_maps(model):
        a = np.abs(w) / np.abs(w).max()
        m_num = m_exp = 0.0
        for j in range(no):
            for i in range(ni):
                x = lambda p, n: (p + 0.5) / n  # noqa: E731
                m_num += a[j, i] * abs(x(j, no) - x(i, ni))
                outs, ins = places(ko, no, j, d_head), places(ki, ni, i, d_head)
                m_exp += a[j, i] * np.mean([abs(x(p, no) - x(q, ni)) for p in outs for q in ins])
        per_map[name] = (m_num / a.sum(), m_exp / a.sum())
        num, expected, den = num + m_num, expected + m_exp, den + a.sum()
    return num / den, expected / den, per_map


def shuffled_model():
    model = tiny_gpt2(4)
    swap_residual(model, 0, 5)
    swap_mlp_neurons(model, 1, 2, 9)
    swap_heads(model, 0, 0, 1)
    return model


def test_wiring_length_and_its_random_expectation_equal_the_formula():
    model = shuffled_model()
    loc = locality(model, n_shuffles=0)
    length, expected, per_map = plain_locality(model)
    assert loc.length == pytest.approx(length, rel=1e-12)
    assert loc.expected_random == pytest.approx(expected, rel=1e-12)
    assert loc.per_map.keys() == per_map.keys()
    for name, (l_m, e_m) in per_map.items():
        assert loc.per_map[name] == pytest.approx((l_m, e_m), rel=1e-12), name


def test_random_placements_average_to_the_expectation():
    model = shuffled_model()
    loc = locality(model, n_shuffles=600, seed=3)
    assert len(loc.shuffled) == 600
    assert abs(loc.shuffled.mean() - loc.expected_random) < 4 * loc.shuffled.std() / np.sqrt(600)
    again = locality(model, n_shuffles=600, seed=3)
    np.testing.assert_array_equal(loc.shuffled, again.shuffled)  # seeded


def test_the_expectation_does_not_depend_on_where_the_neurons_are():
    """E[L] is over every placement, so a swap (a different placement of the same weights) leaves it unchanged."""
    model = tiny_gpt2(4)
    before = locality(model, n_shuffles=0).expected_random
    after = locality(shuffled_model(), n_shuffles=0).expected_random
    assert after == pytest.approx(before, rel=1e-12)


def test_the_figure_prints_the_numbers_of_the_formula():
    model = shuffled_model()
    fig = bimt_transformer_figure(model, None, n_shuffles=20)
    length, expected, per_map = plain_locality(model)
    (caption,) = [t.get_text() for t in fig.texts if "wiring length" in t.get_text()]
    assert float(re.search(r"L = ([0-9.]+)", caption).group(1)) == round(length, 3)
    assert float(re.search(r"placed at random: ([0-9.]+)", caption).group(1)) == round(expected, 3)
    assert float(re.search(r"ratio ([0-9.]+)", caption).group(1)) == round(length / expected, 2)
    drawn = int(re.search(r"the ([0-9,]+) weights with a", caption).group(1).replace(",", ""))
    assert drawn == sum(int((np.abs(w) >= 0.15 * np.abs(w).max()).sum()) for _, w, _, _ in plain_maps(model))
    beside = [float(t.get_text().split()[-1]) for t in fig.axes[0].texts if t.get_text().startswith("L/E[L]")]
    assert beside == [round(l_m / e_m, 2) for l_m, e_m in per_map.values()]


def test_bad_shuffle_count_is_refused():
    with pytest.raises(ValueError, match="n_shuffles"):
        locality(tiny_gpt2(), n_shuffles=-1)
