"""The zoo architectures: hook points, input checks, graphs that pass the protocol check, toy training."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuits.graph import graph_of
from circuits.protocol_check import check_graph
from hooked_bimt.zoo import HookedAttnOnly, HookedResidualMLP
from hooked_bimt.zoo.toy import first_token, fit, sign_xor



def test_residual_mlp_computes_the_documented_sum():
    torch.manual_seed(0)
    m = HookedResidualMLP(5, 4, 3, 2, d_model=6).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    logits, cache = m.run_with_cache(x)
    resid = m.W_E(x)
    for k, block in enumerate(m.blocks):
        pre = block.W_in(resid)
        torch.testing.assert_close(cache[f"blocks.{k}.hook_pre"], pre)
        resid = resid + block.W_out(torch.relu(pre))
    torch.testing.assert_close(logits, m.W_U(resid))
    assert logits.shape == (7, 2)


def test_attn_only_hooks_and_shapes():
    m = HookedAttnOnly(n_layers=2, n_heads=3, d_model=8, d_head=4, n_ctx=5, d_vocab=6)
    tokens = torch.randint(0, 6, (2, 5))
    logits, cache = m.run_with_cache(tokens)
    assert logits.shape == (2, 6)
    assert cache["hook_embed"].shape == (2, 5, 8)
    assert cache["blocks.1.hook_q_input"].shape == (2, 5, 3, 8)
    assert cache["blocks.1.attn.hook_z"].shape == (2, 5, 3, 4)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 3, 5, 5)
    # causal: no attention to later positions
    assert torch.all(cache["blocks.0.attn.hook_pattern"].triu(1) == 0)


def test_attn_only_is_causal_in_its_output():
    """The logits (last position) do not change if earlier outputs would; changing a later token at
    a shorter prefix cannot affect an earlier prefix's logits."""
    torch.manual_seed(1)
    m = HookedAttnOnly(2, 2, 8, 4, 5, 6).double()
    t = torch.randint(0, 6, (3, 5))
    t2 = t.clone()
    t2[:, 4] = (t2[:, 4] + 1) % 6
    torch.testing.assert_close(m(t[:, :4]), m(t2[:, :4]))
    assert not torch.allclose(m(t), m(t2))


@pytest.mark.parametrize("bad, msg", [
    (torch.randn(3, 4), "integer"),
    (torch.randint(0, 6, (3, 6)), "n_ctx"),
    (torch.full((2, 3), 7), r"\[0, 6\)"),
    (torch.randint(0, 6, (5,)), "shape"),
])
def test_attn_only_bad_tokens(bad, msg):
    m = HookedAttnOnly(1, 1, 4, 2, 5, 6)
    with pytest.raises(ValueError, match=msg):
        m(bad)


def test_residual_mlp_bad_input_and_config():
    m = HookedResidualMLP(5, 4, 2, 3)
    with pytest.raises(ValueError, match="d_in=5"):
        m(torch.randn(2, 4))
    with pytest.raises(ValueError, match="floating"):
        m(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_blocks"):
        HookedResidualMLP(5, 4, 0, 3)
    with pytest.raises(ValueError, match="activation"):
        HookedResidualMLP(5, 4, 1, 3, activation="swish2")
    assert HookedResidualMLP(**m.config()).config() == m.config()


def test_residual_graph_declares_every_earlier_block():
    g = graph_of(HookedResidualMLP(3, 4, 3, 2, d_model=5))
    into = {r: [c.sender for c in g.connections_into(r)] for r in g.receivers()}
    assert into["blocks.0.hook_pre"] == ["hook_embed"]
    assert into["blocks.2.hook_pre"] == ["hook_embed", "blocks.0.hook_post", "blocks.1.hook_post"]
    assert into["hook_logits"] == ["hook_embed"] + [f"blocks.{k}.hook_post" for k in range(3)]
    assert g.receivers()[-1] == "hook_logits"
    assert g.n_edges == 5 * 4 * 3 + 4 * 4 * 3 + 5 * 2 + 4 * 2 * 3


def test_attn_graph_declares_heads_as_nodes():
    g = graph_of(HookedAttnOnly(2, 3, 8, 4, 5, 6))
    assert g.nodes["blocks.0.attn.hook_z"].axis == 2 and g.nodes["blocks.0.attn.hook_z"].count == 3
    into = {r: [c.sender for c in g.connections_into(r)] for r in g.receivers()}
    assert into["blocks.1.hook_k_input"] == ["hook_embed", "hook_pos_embed", "blocks.0.attn.hook_z"]
    assert g.node_output["blocks.1.hook_v_input"] == "blocks.1.attn.hook_z"
    # per layer-1 head input: 2 embeddings + 3 heads; 3 inputs x 3 heads; logits: 2 + 6 senders
    assert g.n_edges == 3 * 3 * 2 + 3 * 3 * 5 + (2 + 6)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.integers(0, 10**6))
def test_residual_graph_passes_protocol_check(d_in, d_hidden, n_blocks, d_out, seed):
    torch.manual_seed(seed)
    m = HookedResidualMLP(d_in, d_hidden, n_blocks, d_out, activation="silu").double()
    errors = check_graph(m, example_input=torch.randn(6, d_in, dtype=torch.float64), rtol=1e-9)
    assert set(errors) == set(graph_of(m).receivers())


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(2, 5), st.integers(2, 6), st.integers(0, 10**6))
def test_attn_graph_passes_protocol_check(n_layers, n_heads, n_ctx, d_vocab, seed):
    torch.manual_seed(seed)
    m = HookedAttnOnly(n_layers, n_heads, 6, 3, n_ctx, d_vocab).double()
    tokens = torch.randint(0, d_vocab, (4, n_ctx))
    check_graph(m, example_input=tokens, rtol=1e-9)


def test_float32_protocol_check_with_looser_tolerance():
    m = HookedAttnOnly(2, 2, 8, 4, 4, 5)
    check_graph(m, example_input=torch.randint(0, 5, (4, 4)), rtol=1e-4)


def test_residual_mlp_learns_sign_xor():
    torch.manual_seed(0)
    m = HookedResidualMLP(4, 16, 2, 2)
    assert fit(m, sign_xor(4), steps=150, batch=128, lr=2e-2) > 0.9


def test_attn_only_learns_first_token():
    torch.manual_seed(0)
    m = HookedAttnOnly(1, 2, 16, 8, 4, 5)
    assert fit(m, first_token(4, 5), steps=100, batch=128, lr=2e-2) > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_zoo_runs_on_gpu():
    m = HookedAttnOnly(2, 2, 8, 4, 4, 5).cuda()
    assert m(torch.randint(0, 5, (3, 4)).cuda()).device.type == "cuda"
    r = HookedResidualMLP(4, 8, 2, 2).cuda()
    check_graph(r, example_input=torch.randn(4, 4, device="cuda"), rtol=1e-4)


def _constant_parts(model, inputs):
    """receiver -> z_R - sum_S contribute(a_S), computed directly from one cached run."""
    _, cache = model.run_with_cache(inputs)
    g = graph_of(model)
    return {r: cache[r] - sum(c.contribute(cache[c.sender]) for c in g.connections_into(r)) for r in g.receivers()}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6))
def test_residual_receiver_input_is_contributions_plus_its_bias(seed):
    torch.manual_seed(seed)
    m = HookedResidualMLP(3, 4, 3, 2, activation="gelu").double()
    rest = _constant_parts(m, torch.randn(5, 3, dtype=torch.float64))
    for k, block in enumerate(m.blocks):
        torch.testing.assert_close(rest[f"blocks.{k}.hook_pre"], block.W_in.bias.expand(5, -1))
    torch.testing.assert_close(rest["hook_logits"], m.W_U.bias.expand(5, -1))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6))
def test_attn_receiver_input_is_contributions_plus_earlier_output_biases(seed):
    torch.manual_seed(seed)
    m = HookedAttnOnly(3, 2, 6, 3, 4, 5).double()
    with torch.no_grad():
        for block in m.blocks:
            block.attn.b_O.normal_()
            block.attn.b_Q.normal_()
        m.b_U.normal_()
    rest = _constant_parts(m, torch.randint(0, 5, (3, 4)))
    for l in range(3):
        expected = sum((m.blocks[j].attn.b_O for j in range(l)), torch.zeros(6, dtype=torch.float64))
        for kind in "qkv":
            torch.testing.assert_close(rest[f"blocks.{l}.hook_{kind}_input"], expected.expand(3, 4, 2, 6))
    b_O_total = sum(b.attn.b_O for b in m.blocks)
    torch.testing.assert_close(rest["hook_logits"], (b_O_total @ m.W_U + m.b_U).expand(3, -1))
