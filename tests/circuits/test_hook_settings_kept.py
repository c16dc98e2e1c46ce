"""Issue 24: every public function of ``circuits`` that takes a bridge leaves its gated hooks (``use_attn_result``,
``use_split_qkv_input``, ``use_hook_mlp_in``) as the user had them: all off, or a mixed setting, whether it
returns or raises. ``graph_of`` and ``check_graph`` included (they used to leave all three on)."""

from __future__ import annotations

import pytest
import torch

import circuits
from circuits import Circuit
from circuits.hook_settings import GATED

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import gpt2_bridge, tokens  # noqa: E402

from circuits.models.tl_attribution import from_tl_attribution  # noqa: E402
from circuits.planted import removal_effects  # noqa: E402

SETTINGS = {"all_off": (False, False, False), "mixed": (True, False, True)}


def _full():
    """A circuit of an identical bridge (built apart, so that the bridge under test is untouched)."""
    return Circuit.full(circuits.graph_of(gpt2_bridge()), settings={"algorithm": "acdc"})


def _ld(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


def _scores(b):
    return dict.fromkeys(circuits.graph_of(gpt2_bridge()).edges(), 1.0)


def _tl_scores():
    return {("embed", "blocks.0.attn.q"): 0.5}


# name -> (call(bridge, clean, corrupted), the error a bridge meets anyway or None)
CALLS = {
    "graph_of": (lambda b, c, d: circuits.graph_of(b), None),
    "check_graph": (lambda b, c, d: circuits.check_graph(b, example_input=c, rtol=1e-9), None),
    "check_graph_given_a_graph": (lambda b, c, d: circuits.check_graph(b, circuits.graph_of(b), c, rtol=1e-9), None),
    "acdc": (lambda b, c, d: circuits.acdc(b, c, d, threshold=0.01), None),
    "acdc_reference": (lambda b, c, d: circuits.acdc(b, c, d, threshold=0.01, engine="reference"), None),
    "eap": (lambda b, c, d: circuits.eap(b, c, d), None),
    "eap_then_acdc": (lambda b, c, d: circuits.eap_then_acdc(b, c, d, top_n=5, threshold=0.01), None),
    "node_patching": (lambda b, c, d: circuits.node_patching(b, c, d, logit_diff=_ld), None),
    "run_circuit": (lambda b, c, d: circuits.run_circuit(b, _full(), c, d, check_model=False), None),
    "evaluate": (lambda b, c, d: circuits.evaluate(b, _full(), c, d, check_model=False), None),
    "faithfulness_curve": (lambda b, c, d: circuits.faithfulness_curve(b, _scores(b), c, d, levels=(0.0, 0.5, 1.0)),
                           None),
    "threshold_sweep": (lambda b, c, d: circuits.threshold_sweep(b, c, d, [0.01, 0.1]), None),
    "circuit_from_scores": (lambda b, c, d: circuits.circuit_from_scores(_scores(b), b, top_n=3), None),
    "model_identity": (lambda b, c, d: circuits.model_identity(b), None),
    "planted.removal_effects": (lambda b, c, d: removal_effects(b, c, d, edges=list(circuits.graph_of(b).edges())[:3]),
                                None),
    "models.from_tl_attribution": (lambda b, c, d: from_tl_attribution(_tl_scores(), b), ValueError),
    "viz.circuit_graph": (lambda b, c, d: circuits.viz.circuit_graph(b, _full(), check_model=False), None),
    "viz.neuron_activations": (lambda b, c, d: circuits.viz.neuron_activations(b, _full(), c, d, check_model=False),
                               TypeError),
    "viz.draw_network": (lambda b, c, d: circuits.viz.draw_network(b, _full()), TypeError),
    "viz.network_vs_circuit": (lambda b, c, d: circuits.viz.network_vs_circuit(b, _full(), check_model=False),
                               TypeError),
}


def _bridge(setting: str):
    bridge = gpt2_bridge()
    for flag, value in zip(GATED, SETTINGS[setting]):
        getattr(bridge, f"set_{flag}")(value)
    return bridge


def _flags(bridge) -> tuple[bool, ...]:
    return tuple(bool(getattr(bridge.cfg, flag)) for flag in GATED)


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", list(CALLS))
def test_every_public_function_leaves_the_users_hook_settings(name, setting):
    call, refused = CALLS[name]
    bridge = _bridge(setting)
    clean, corrupted = tokens(6)
    if refused is None:
        call(bridge, clean, corrupted)
    else:
        with pytest.raises(refused):
            call(bridge, clean, corrupted)
    assert _flags(bridge) == SETTINGS[setting]


# model_identity never runs a bridge or builds its graph (a bridge declares no circuit_graph): nothing to fail in
@pytest.mark.parametrize("name", [n for n, (_, refused) in CALLS.items() if refused is None and n != "model_identity"])
def test_the_settings_are_restored_when_the_function_raises_with_the_hooks_switched_on(name):
    """The bridge's forward raises (as an interrupted or failing run would) after the function switched the hooks
    on: the user's mixed setting comes back all the same."""
    bridge = _bridge("mixed")
    clean, corrupted = tokens(6)
    switched = []

    def boom(*_):
        switched.append(_flags(bridge) != SETTINGS["mixed"])
        raise RuntimeError("the forward pass failed")

    bridge.embed.register_forward_hook(boom)  # every forward (run_with_hooks too) passes the embedding
    with pytest.raises((RuntimeError, ValueError), match="the forward pass failed"):
        CALLS[name][0](bridge, clean, corrupted)
    assert switched and switched[-1], "the hooks were never switched on: the test proves nothing"
    assert _flags(bridge) == SETTINGS["mixed"]


@pytest.mark.parametrize("name", ["acdc", "eap_then_acdc", "threshold_sweep"])
def test_a_float32_bridge_searched_on_a_float64_copy_is_left_alone(name):
    """ACDC runs on an upcast working copy of a float32 bridge: the copy's graph keeps its hooks on for the search
    (graph_of's restore would switch them off under it), and the user's bridge keeps the user's setting."""
    bridge = gpt2_bridge().float()
    for flag, value in zip(GATED, SETTINGS["mixed"]):
        getattr(bridge, f"set_{flag}")(value)
    CALLS[name][0](bridge, *tokens(6))
    assert _flags(bridge) == SETTINGS["mixed"]


def test_a_graph_of_kept_settings_still_runs():
    """``graph_of`` leaves the hooks off; a function handed that graph turns on what it needs for its run."""
    bridge = _bridge("all_off")
    clean, _ = tokens(6)
    graph = circuits.graph_of(bridge)
    with torch.no_grad():
        errors = circuits.check_graph(bridge, graph, clean, rtol=1e-9)
    assert max(errors.values()) < 1e-12 and _flags(bridge) == (False, False, False)
