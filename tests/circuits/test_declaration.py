"""Declarations are checked before discovery (issue 10 item 4): a lying graph is refused with an error naming
the receiver hook, by every algorithm, and the forward order comes from the hooks' firing order."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import ResidualMLP, make_batches, make_mlp

from circuits import acdc, eap, graph_of, node_patching
from circuits.graph import Connection
from circuits.planted import removal_effects
from circuits.protocol_check import DECLARATION_ROWS, check_declaration


def _ld(logits):
    return logits[:, 0] - logits[:, 1]


ALGORITHMS = {
    "acdc-fast": lambda m, c, x: acdc(m, c, x, threshold=0.01, engine="fast"),
    "acdc-reference": lambda m, c, x: acdc(m, c, x, threshold=0.01, engine="reference"),
    "eap": lambda m, c, x: eap(m, c, x),
    "eap-ig": lambda m, c, x: eap(m, c, x, steps=2),
    "node_patching": lambda m, c, x: node_patching(m, c, x, _ld),
    "removal_effects": lambda m, c, x: removal_effects(m, c, x),
}


def _lie(model, graph):
    model.circuit_graph = lambda: graph  # the model now declares ``graph``
    return model


def _replace(graph, index, **changes):
    conns = list(graph.connections)
    conns[index] = dataclasses.replace(conns[index], **changes)
    return dataclasses.replace(graph, connections=tuple(conns))


def _bias_inside(model):
    g = graph_of(model)
    lin = model.linears[0]
    return _replace(g, 0, contribute=lambda a: a @ lin.weight.T + lin.bias, weight=None)


def _square_inside(model):
    g = graph_of(model)
    lin = model.linears[1]  # zero at zero, so only the linearity test can see it
    return _replace(g, 1, contribute=lambda a: a @ lin.weight.T + 0.5 * (a * a) @ lin.weight.T, weight=None)


def _wrong_activation(model):
    g = graph_of(model)
    return dataclasses.replace(g, activations={h: torch.tanh for h in g.activations})  # the model runs SiLU


def _missing_skip(_model):
    r = ResidualMLP()
    g = graph_of(r)
    return dataclasses.replace(g, connections=tuple(c for c in g.connections if c.sender != "hook_in"
                                                    or c.receiver != "hook_logits"))


CASES = {
    # name: (model factory, lie, the receiver hook the error must name, words of the reason)
    "bias": (lambda: make_mlp(0), _bias_inside, "blocks.0.hook_pre", "contribute(0) != 0"),
    "non-linear": (lambda: make_mlp(0), _square_inside, "blocks.1.hook_pre", "not linear"),
    "activation": (lambda: make_mlp(0), _wrong_activation, "blocks.0.hook_pre", "activation"),
    "missing": (lambda: ResidualMLP(), _missing_skip, "hook_logits", "missing"),
}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lying_declaration_is_refused_naming_the_receiver(case, algorithm):
    factory, lie, hook, reason = CASES[case]
    model = factory()
    d_in = 4 if case == "missing" else 5
    clean, corrupted = make_batches(1, batch=6, d_in=d_in)
    _lie(model, lie(model))
    with pytest.raises(ValueError) as err:
        ALGORITHMS[algorithm](model, clean, corrupted)
    assert err.value.args[0].startswith(hook + ":") and reason in err.value.args[0], err.value.args[0]


def test_the_honest_declarations_pass():
    for model, d_in in ((make_mlp(0), 5), (ResidualMLP(), 4)):
        clean, corrupted = make_batches(1, batch=6, d_in=d_in)
        g = check_declaration(model, graph_of(model), clean, corrupted)
        assert [c.receiver for c in g.connections] == [c.receiver for c in graph_of(model).connections]


def test_a_sender_that_fires_after_its_receiver_is_refused():
    model = make_mlp(0)
    g = graph_of(model)
    backwards = Connection("blocks.1.hook_post", "blocks.0.hook_pre", lambda a: a @ torch.zeros(3, 4, dtype=a.dtype))
    _lie(model, dataclasses.replace(g, connections=g.connections + (backwards,)))
    with pytest.raises(ValueError, match=r"^blocks\.0\.hook_pre: its declared sender blocks\.1\.hook_post fires after"):
        acdc(model, *make_batches(0), threshold=0.01)


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_forward_order_comes_from_firing_not_from_the_declaration(engine):
    """The same graph declared with its connections reversed gives the same circuit, tested in the same order."""
    clean, corrupted = make_batches(2, batch=6)
    honest = acdc(make_mlp(2), clean, corrupted, threshold=0.003, engine=engine)
    model = make_mlp(2)
    g = graph_of(model)
    _lie(model, dataclasses.replace(g, connections=tuple(reversed(g.connections))))
    assert graph_of(model).receivers()[0] == "hook_logits"  # declared output-first
    shuffled = acdc(model, clean, corrupted, threshold=0.003, engine=engine)
    assert shuffled.edges == honest.edges and 0 < honest.n_edges < honest.n_total_edges
    assert list(shuffled.effects.items()) == list(honest.effects.items())
    assert shuffled.settings["engine_used"] == engine


def test_the_check_runs_on_a_few_rows_only():
    model = make_mlp(0)
    seen: list[int] = []
    model.hook_in.add_hook(lambda act, hook: seen.append(act.shape[0]))
    clean, corrupted = make_batches(0, batch=50)
    check_declaration(model, graph_of(model), clean, corrupted)
    assert seen == [DECLARATION_ROWS, DECLARATION_ROWS]  # two forward passes of a few rows


@pytest.mark.parametrize("mix, reason", [
    (lambda n_r, n_s: torch.zeros(n_r, n_s, dtype=torch.float64), "node_mix() disagrees with contribute"),
    (lambda n_r, n_s: torch.ones(n_r + 1, n_s, dtype=torch.float64), "node_mix() has shape"),
])
def test_a_wrong_node_mix_is_refused_naming_the_receiver(mix, reason):
    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10, n_positions=8)
    bridge = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                      tokenizer=None, device="cpu")
    g = graph_of(bridge)
    i = next(i for i, c in enumerate(g.connections) if c.receiver == "blocks.0.attn.hook_k_input")
    n_r, n_s = g.nodes[g.connections[i].receiver].count, g.nodes[g.connections[i].sender].count
    _lie(bridge, _replace(g, i, node_mix=lambda: mix(n_r, n_s)))
    clean, corrupted = torch.randint(0, 10, (3, 4)), torch.randint(0, 10, (3, 4))
    for algorithm in (lambda: eap(bridge, clean, corrupted), lambda: acdc(bridge, clean, corrupted, threshold=0.01)):
        with pytest.raises(ValueError) as err:
            algorithm()
        assert err.value.args[0].startswith("blocks.0.attn.hook_k_input:") and reason in err.value.args[0]
