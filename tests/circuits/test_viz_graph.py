"""circuit_graph on every model the engines support: any-width HookedMLP, the zoo, TransformerLens bridges.

The embedded data is decoded here and compared with the circuit and with the hook names parsed in the
test (layer of a hook, which head input an edge feeds), not with the view's own helpers.
"""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import circuits.viz as viz
from circuits import Circuit, graph_of
from hooked_bimt import HookedMLP
from hooked_bimt.zoo import HookedAttnOnly, HookedResidualMLP

DATA_RE = re.compile(r'<script type="application/json" class="hb-data">(.*?)</script>', re.S)
BRIDGE = pytest.importorskip("transformer_lens.model_bridge.sources")


def embedded(view) -> dict:
    (found,) = DATA_RE.findall(view.page())
    return json.loads(found)


def random_circuit(model, fraction: float, seed: int) -> Circuit:
    g = graph_of(model)
    rng = random.Random(seed)
    edges = rng.sample(list(g.edges()), max(1, int(g.n_edges * fraction)))
    return Circuit.from_edges(g, edges, effects={e: rng.uniform(-1, 1) for e in edges})


def gpt2_bridge(layers: int = 2, heads: int = 4):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_head=heads, n_embd=16, vocab_size=11, n_positions=8)
    return BRIDGE.build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                           tokenizer=None, device="cpu")


def llama_bridge():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=16,
                      intermediate_size=32, vocab_size=11, max_position_embeddings=8)
    return BRIDGE.build_bridge_from_module(LlamaForCausalLM(cfg).double().eval(), "LlamaForCausalLM", hf_config=cfg,
                                           tokenizer=None, device="cpu")


ATTN = HookedAttnOnly(2, 3, 16, 4, 6, 10)
GPT2 = gpt2_bridge()


def decoded_edges(d: dict) -> dict:
    """Edge tuple -> (effect, sender unit, receiver unit, kind) from the page's data."""
    E, hooks = d["edges"], d["hooks"]
    return {
        (hooks[sh], si, hooks[rh], ri): (e, s, r, d["kinds"][k])
        for sh, si, rh, ri, e, s, r, k in zip(E["sh"], E["si"], E["rh"], E["ri"], E["e"], E["s"], E["r"], E["kind"])
    }


def layer_of(hook: str, n_layers: int) -> int:
    """Row a hook belongs in, from its name alone: input 0, blocks.l -> l + 1, the output on top."""
    m = re.match(r"blocks\.(\d+)\.", hook)
    if hook.endswith(("hook_logits",)) or (m and hook == f"blocks.{n_layers - 1}.hook_out"):
        return n_layers + 1
    return int(m.group(1)) + 1 if m else 0


@pytest.mark.parametrize("d_in, shape", [(25, [5, 5]), (30, None), (784, [28, 28])])
def test_hooked_mlp_of_any_input_width(d_in, shape):
    torch.manual_seed(0)
    model = HookedMLP((d_in, 6, 3))
    circuit = random_circuit(model, 0.5, 0)
    d = embedded(viz.circuit_graph(model, circuit))
    assert d["input_shape"] == shape
    assert d["widths"] == [d_in, 6, 3] and len(d["edges"]["s"]) == circuit.n_edges
    assert embedded(viz.circuit_graph(model, circuit, input_shape=None))["input_shape"] is None


def test_explicit_input_shape_must_fit():
    model = HookedMLP((25, 6, 3))
    with pytest.raises(ValueError, match="input_shape"):
        viz.circuit_graph(model, random_circuit(model, 0.5, 0), input_shape=(28, 28))
    with pytest.raises(ValueError, match="input_shape"):
        viz.circuit_graph(model, random_circuit(model, 0.5, 0), input_shape="square")


@pytest.mark.parametrize("model, n_layers", [(ATTN, 2), (HookedResidualMLP(5, 8, 2, 3), 2), (GPT2, 2)],
                         ids=["attn_only", "residual_mlp", "gpt2_bridge"])
def test_unit_view_embeds_every_edge_with_its_effect_and_rows(model, n_layers):
    circuit = random_circuit(model, 0.4, 1)
    view = viz.circuit_graph(model, circuit)
    d = embedded(view)
    assert view.kind == "graph" and d["n_edges"] == circuit.n_edges == view.n_edges
    assert d["n_total_edges"] == graph_of(model).n_edges
    got = decoded_edges(d)
    assert set(got) == set(circuit.edges)
    U = d["units"]
    for edge, (effect, s, r, kind) in got.items():
        assert effect == pytest.approx(circuit.effects[edge], rel=1e-5)
        assert (d["hooks"][U["hook"][s]], U["index"][s]) == (edge[0], edge[1])  # drawn from its sender
        assert edge[2] in [d["hooks"][p] for p in U["ports"][r]] and U["index"][r] == edge[3]  # into its port
        assert U["row"][s] == layer_of(edge[0], n_layers) and U["row"][r] == layer_of(edge[2], n_layers)
        assert U["xy"][s][1] > U["xy"][r][1]  # input at the bottom: every edge goes up the page
    members = {u for _, s, r, _ in got.values() for u in (s, r)}
    assert {u for u, m in enumerate(U["in_circuit"]) if m} == members


def test_bridge_heads_are_units_with_q_k_v_ports():
    circuit = random_circuit(GPT2, 1.0, 2)
    d = embedded(viz.circuit_graph(GPT2, circuit))
    U = d["units"]
    labels = U["label"]
    assert labels == ["embed", *(f"L0H{h}" for h in range(4)), "MLP0", *(f"L1H{h}" for h in range(4)), "MLP1", "out"]
    assert d["row_labels"] == ["input", "layer 0", "layer 1", "output"]
    head = labels.index("L1H2")
    assert [d["hooks"][p] for p in U["ports"][head]] == [f"blocks.1.attn.hook_{x}_input" for x in "qkv"]
    kinds = {}
    for (s, si, r, ri), (_, _, ru, kind) in decoded_edges(d).items():
        kinds.setdefault(kind, set()).add(r.rsplit(".", 1)[-1])
    assert kinds == {"q": {"hook_q_input"}, "k": {"hook_k_input"}, "v": {"hook_v_input"},
                     "mlp_in": {"hook_mlp_in"}, "out": {"hook_out"}}


@pytest.mark.parametrize("arch", ["GPTNeoXForCausalLM", "Qwen3ForCausalLM", "GPTBigCodeForCausalLM"])
def test_other_architectures_draw_every_edge_into_its_port(arch):
    """Parallel attention and MLP (GPT-NeoX: no edge from a layer's heads into its MLP), q/k norms, multi-query."""
    from test_bridge_architectures import WORKS, build

    bridge = build(arch, *WORKS[arch])
    circuit = random_circuit(bridge, 0.6, 4)
    d = embedded(viz.circuit_graph(bridge, circuit))
    got = decoded_edges(d)
    assert set(got) == set(circuit.edges)
    U = d["units"]
    for (s, si, r, ri), (_, su, ru, kind) in got.items():
        assert d["hooks"][U["hook"][su]] == s and U["index"][su] == si
        assert r in [d["hooks"][p] for p in U["ports"][ru]] and U["index"][ru] == ri
        assert kind == {"hook_q_input": "q", "hook_k_input": "k", "hook_v_input": "v", "hook_mlp_in": "mlp_in",
                        "hook_out": "out"}[r.rsplit(".", 1)[-1]]
    if arch == "GPTNeoXForCausalLM":
        assert not [e for e in graph_of(bridge).edges() if e.receiver.endswith("hook_mlp_in")
                    and e.sender.endswith("hook_result") and e.sender.split(".")[1] == e.receiver.split(".")[1]]


def test_llama_gqa_key_value_groups_are_drawn_as_their_own_units():
    bridge = llama_bridge()
    circuit = random_circuit(bridge, 1.0, 3)
    d = embedded(viz.circuit_graph(bridge, circuit))
    assert set(decoded_edges(d)) == set(circuit.edges)
    assert {"L0k0", "L0k1", "L0v0", "L0v1", "L1k1"} <= set(d["units"]["label"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.integers(0, 70), min_size=1, max_size=71), st.booleans())
def test_any_circuit_of_the_attention_model_round_trips(picked, with_effects):
    edges = [e for k, e in enumerate(graph_of(ATTN).edges()) if k in picked]
    effects = {"effects": {e: 0.5 for e in edges}} if with_effects else {}
    circuit = Circuit.from_edges(graph_of(ATTN), edges, **effects)
    d = embedded(viz.circuit_graph(ATTN, circuit))
    assert set(decoded_edges(d)) == set(edges) and d["has_effects"] == with_effects
    assert all(v is None for v in d["edges"]["e"]) != with_effects


def test_a_circuit_from_another_model_is_refused():
    other = random_circuit(gpt2_bridge(layers=3), 0.5, 0)
    with pytest.raises(ValueError, match="does not belong"):
        viz.circuit_graph(GPT2, other)
