"""The fast engine's functional blocks (``circuits.acdc.attention.blocks``) and delta scoring
(``circuits.acdc.attention.delta``) against the bridge's own forward pass and hooks, on GPT-2 and a GQA Llama."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits import metrics

pytest.importorskip("transformer_lens.model_bridge")
from test_bridge import _GPT2, _LLAMA, VOCAB, gpt2_bridge, spec7_edges, spec7_run, tokens  # noqa: E402

from circuits.acdc.attention import delta as bridge_delta  # noqa: E402
from circuits.acdc.attention.blocks import BridgeBlocks  # noqa: E402
from circuits.acdc.options import Options  # noqa: E402
from circuits.graph import enable_graph_hooks  # noqa: E402
from circuits.patching import corrupted_activations, mask_of_edges  # noqa: E402


def _neox(parallel: bool):
    """GPT-NeoX (Pythia's family): rotary on a quarter of each head; attention and MLP in parallel or in turn."""
    import transformers as tr
    from test_bridge_architectures import _SMALL, build

    return build("GPTNeoXForCausalLM", tr.GPTNeoXConfig, dict(_SMALL, use_parallel_residual=parallel, rotary_pct=0.25))


def _llama_style(arch: str):
    """The other families ``bridge_blocks`` reads (HF's attention, rotary from the model's module)."""
    import transformers as tr
    from test_bridge_architectures import WORKS, build

    if arch == "MistralForCausalLM":  # heads wider than d_model / n_heads
        return build(arch, tr.MistralConfig, dict(WORKS[arch][1], head_dim=8))
    return build(arch, *WORKS[arch])


_NEOX, _NEOX_SEQ = _neox(True), _neox(False)
BRIDGES = {"gpt2": _GPT2, "llama": _LLAMA, "neox": _NEOX, "neox_sequential": _NEOX_SEQ,
           **{a: _llama_style(a) for a in ("MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                                            "Phi3ForCausalLM", "Starcoder2ForCausalLM", "StableLmForCausalLM",
                                            "SmolLM3ForCausalLM", "GPTBigCodeForCausalLM", "GemmaForCausalLM",
                                            "OlmoForCausalLM")}}


def _independent_forward(bridge, clean):
    """Every hook of a plain run, from the bridge itself (``run_with_cache``)."""
    with torch.no_grad():
        return bridge.run_with_cache(clean)


@pytest.mark.parametrize("which", sorted(BRIDGES))
def test_functional_blocks_equal_the_bridges_own_blocks(which):
    bridge = BRIDGES[which]
    graph = circuits.graph_of(bridge)
    enable_graph_hooks(bridge)  # graph_of leaves the gated hooks as they were; the cache below reads them
    clean, _ = tokens(7)
    logits, cache = _independent_forward(bridge, clean)
    bb = BridgeBlocks(bridge)
    full = {(c.sender, c.receiver): torch.ones(graph.nodes[c.receiver].count, graph.nodes[c.sender].count,
                                                dtype=torch.bool) for c in graph.connections}
    with torch.no_grad():
        st_ = bridge_delta.baseline(bb, graph, clean, {}, full)
    for layer in range(bridge.cfg.n_layers):
        for hook in (f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.mlp.hook_out"):
            assert (st_.acts[hook] - cache[hook]).abs().max() < 1e-12, hook
        for role in "qkv":
            hook = f"blocks.{layer}.attn.hook_{role}_input"
            assert (st_.x[hook] - cache[hook]).abs().max() < 1e-12, hook
    assert (st_.logits - logits).abs().max() < 1e-12


@pytest.mark.parametrize("which", sorted(BRIDGES))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), keep=st.floats(0.0, 1.0))
def test_patched_baseline_equals_the_hook_only_spec7_run(which, seed, keep):
    """The functional patched run of a random circuit gives the hook-only SPEC 7 run's logits."""
    bridge = BRIDGES[which]
    g = torch.Generator().manual_seed(seed)
    edges = spec7_edges(bridge.cfg)
    kept = {e for e in edges if float(torch.rand((), generator=g)) < keep}
    clean, corrupted = tokens(seed)
    expected = spec7_run(bridge, kept, clean, corrupted)
    graph = circuits.graph_of(bridge)
    mask = mask_of_edges(graph, kept)
    a_prime = corrupted_activations(bridge, corrupted, graph=graph)
    with torch.no_grad():
        got = bridge_delta.baseline(BridgeBlocks(bridge), graph, clean, a_prime, mask).logits
    bb = BridgeBlocks(bridge)  # HF computes RMSNorm and its own attention's softmax in float32, even on float64
    tol = 1e-5 if bb.softmax32 or bb.layers[0].norm1[3] else 1e-12
    assert (got - expected).abs().max() < tol


def test_metric_positions_are_probed():
    full = torch.randn(3, 6, VOCAB, dtype=torch.float64)
    assert bridge_delta.metric_positions(metrics.kl(), full).tolist() == [5]
    assert bridge_delta.metric_positions(metrics.kl(pos=2), full).tolist() == [2]
    assert bridge_delta.metric_positions(metrics.kl(pos=None), full).tolist() == list(range(6))


@pytest.mark.parametrize("threshold", [0.0, 0.01])
def test_fast_engine_matches_reference_on_three_layers_at_all_positions(threshold):
    """Deeper model, metric over every position (so every node is needed everywhere): same edges as the reference."""
    bridge = gpt2_bridge(seed=3, layers=3, heads=2, d=8)
    clean, corrupted = tokens(11)
    metric = metrics.kl(pos=None)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=threshold, metric=metric, engine="reference")
    fast = circuits.acdc(bridge, clean, corrupted, threshold=threshold, metric=metric, engine="fast")
    assert fast.settings["engine_used"] == "fast_attention"
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-12


def test_fast_engine_matches_reference_when_the_metric_reads_some_positions():
    """kl at positions 3 and 7 of 8: nodes needed at those positions only and nodes needed everywhere mix."""
    bridge = gpt2_bridge(seed=3, layers=3, heads=4, d=16)
    clean, corrupted = tokens(23, seq=8)
    metric = metrics.kl(pos=torch.tensor([[3, 7]] * clean.shape[0]))
    ref = circuits.acdc(bridge, clean, corrupted, threshold=0.01, metric=metric, engine="reference")
    fast = circuits.acdc(bridge, clean, corrupted, threshold=0.01, metric=metric, engine="fast")
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    assert 0 < ref.n_edges < ref.n_total_edges
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-12


def test_blocks_that_do_not_reproduce_the_bridge_are_not_used(monkeypatch):
    """The delta path checks its functional blocks against the bridge's own patched forward on the clean batch
    before use: blocks that compute something else (here a wrong attention scale, as an unmodelled configuration
    option would) are an error under ``Options.strict`` (the test suite's default), else a warning and stacked
    bridge forwards, so the same circuit as the reference."""
    clean, corrupted = tokens(12)
    ref = circuits.acdc(_GPT2, clean, corrupted, threshold=0.01, engine="reference")
    init = BridgeBlocks.__init__

    def wrong_scale(self, bridge):
        init(self, bridge)
        self.scale *= 1.5

    monkeypatch.setattr(BridgeBlocks, "__init__", wrong_scale)
    with pytest.raises(RuntimeError, match="functional blocks differ from this bridge's forward.*strict"):
        circuits.acdc(_GPT2, clean, corrupted, threshold=0.01, engine="fast", options=Options(strict=True))
    with pytest.warns(UserWarning, match="functional blocks differ from this bridge's forward"):
        fast = circuits.acdc(_GPT2, clean, corrupted, threshold=0.01, engine="fast", options=Options(strict=False))
    assert fast.settings["path"] == "attention.stacked"
    assert 0 < ref.n_edges < ref.n_total_edges
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-60.0, 60.0, allow_nan=False), min_size=1, max_size=40))
def test_gelu_tanh_equals_hf_new_gelu(values):
    """The blocks' GELU (``x / (1 + exp(-2y))``) is HF GPT-2's ``NewGELUActivation`` formula, written out here
    independently: ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, to 1e-15 relative in float64."""
    import math

    from circuits.acdc.attention.blocks import gelu_tanh

    x = torch.tensor(values, dtype=torch.float64)
    want = 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))
    got = gelu_tanh(x)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, want, rtol=1e-14, atol=1e-15)
    big = torch.tensor([-1e3, -40.0, 40.0, 1e3], dtype=torch.float64)
    assert gelu_tanh(big).tolist() == [0.0, 0.0, 40.0, 1e3]
