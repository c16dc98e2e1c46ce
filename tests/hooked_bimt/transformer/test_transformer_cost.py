"""SPEC 8's connection cost against a plain re-computation from the formula, written out here."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from hooked_bimt.transformer import connection_cost
from gpt2_fixtures import tiny_gpt2


def plain_cost(model, A: float, y: float) -> float:
    """cc = sum_maps mean(|W| (A D + y)) + mean(|b| y), every map written out, W as (out x in)."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    n_layer = model.config.n_layer
    vocab, d = sd["transformer.wte.weight"].shape
    d_mlp = sd["transformer.h.0.mlp.c_fc.weight"].shape[1]

    def pos(n):
        return [(i + 0.5) / n for i in range(n)]

    def term(w_out_in, x_out, x_in, bias):
        total = 0.0
        for j, xo in enumerate(x_out):
            for i, xi in enumerate(x_in):
                total += abs(float(w_out_in[j, i])) * (A * abs(xo - xi) + y)
        total /= len(x_out) * len(x_in)
        if bias is not None:
            total += sum(abs(float(b)) * y for b in bias) / len(bias)
        return total

    res, voc, mlp = pos(d), pos(vocab), pos(d_mlp)
    cc = term(sd["transformer.wte.weight"].T, res, voc, None)
    for l in range(n_layer):
        p = f"transformer.h.{l}."
        cc += term(sd[p + "attn.c_attn.weight"].T, res * 3, res, sd[p + "attn.c_attn.bias"])
        cc += term(sd[p + "attn.c_proj.weight"].T, res, res, sd[p + "attn.c_proj.bias"])
        cc += term(sd[p + "mlp.c_fc.weight"].T, mlp, res, sd[p + "mlp.c_fc.bias"])
        cc += term(sd[p + "mlp.c_proj.weight"].T, res, mlp, sd[p + "mlp.c_proj.bias"])
    return cc + term(sd["lm_head.weight"], voc, res, None)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), A=st.sampled_from([0.0, 0.7, 2.0]), y=st.sampled_from([0.0, 0.5, 1.3]))
def test_cost_equals_the_formula_written_plainly(seed, A, y):
    model = tiny_gpt2(seed, d_model=6, n_head=3, d_mlp=5, n_layer=2, vocab=7)
    cc = connection_cost(model, distance_factor=A, y_star=y)
    assert cc.shape == () and cc.requires_grad
    assert cc.detach().item() == pytest.approx(plain_cost(model, A, y), rel=1e-12, abs=1e-14)


def test_cost_gradient_is_the_subgradient():
    model = tiny_gpt2(3)
    connection_cost(model, 2.0, 0.5).backward()
    w = model.transformer.h[1].mlp.c_fc.weight  # (d_model x d_mlp) = (in x out): D[i, j] = |x_res_i - x_mlp_j|
    x_in = (torch.arange(w.shape[0], dtype=torch.float64) + 0.5) / w.shape[0]
    x_out = (torch.arange(w.shape[1], dtype=torch.float64) + 0.5) / w.shape[1]
    expected = torch.sign(w.detach()) * (2.0 * (x_in[:, None] - x_out[None, :]).abs() + 0.5) / w.numel()
    torch.testing.assert_close(w.grad, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kw, match", [({"distance_factor": -1.0}, "distance_factor"), ({"y_star": "a"}, "y_star"),
                                       ({"distance_factor": float("nan")}, "distance_factor")])
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        connection_cost(tiny_gpt2(), **kw)


def test_refuses_non_gpt2_and_tied_embeddings():
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        connection_cost(torch.nn.Linear(2, 2))
    from transformers import GPT2Config, GPT2LMHeadModel

    tied = GPT2LMHeadModel(GPT2Config(vocab_size=5, n_positions=4, n_embd=4, n_layer=1, n_head=1))
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        connection_cost(tied)
