"""TransformerLens 4 architectures beyond GPT-2 and Llama (SPEC 7, issue 11 item 1): each either works exactly or
is refused by ``graph_of`` before any work, with an error naming the architecture and what is missing.

"Works exactly": the declaration holds on the real forward, every edge kept / removed gives the clean / corrupted
logits, and ACDC's circuit is the hook-only SPEC 7 ACDC's of ``test_bridge`` (which shares no code with
``circuits``), found alike by both engines. The families of ``DELTA`` have the fast engine's delta path
(``bridge_blocks``, as GPT-2 and Llama; their blocks are tested in ``test_bridge_blocks``); the others are scored
by stacked bridge forwards (Granite here; ``test_what_the_delta_path_cannot_compute_goes_to_stacked_forwards``), and
where the bridge builds per-batch tensors before the first block (Qwen 3, OLMo, StableLM, SmolLM 3, GPT-BigCode; in
these tests StableLM with q/k norms) the states cannot be copied inside the blocks and are stacked at the input
(``fast_attention._Stacked``).
"""

from __future__ import annotations

import pytest
import torch

import circuits
from circuits import Circuit
from circuits.acdc.attention import blocks as bridge_blocks

pytest.importorskip("transformer_lens.model_bridge")
import transformers as tr  # noqa: E402
from transformer_lens.model_bridge.sources import build_bridge_from_module  # noqa: E402

from test_bridge import VOCAB, spec7_acdc, spec7_edges, tokens  # noqa: E402

_SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32, vocab_size=VOCAB,
              max_position_embeddings=16, initializer_range=0.3)
_GQA = dict(_SMALL, num_key_value_heads=2)

# architecture -> (config class, config, what it exercises)
WORKS = {
    "GPTNeoXForCausalLM": (tr.GPTNeoXConfig, dict(_SMALL, use_parallel_residual=True)),  # Pythia: parallel attn + MLP
    "Qwen3ForCausalLM": (tr.Qwen3Config, dict(_GQA, head_dim=4)),  # per-head q/k norms
    "OlmoForCausalLM": (tr.OlmoConfig, dict(_SMALL)),  # LayerNorm without parameters, in float32
    "GPTBigCodeForCausalLM": (tr.GPTBigCodeConfig, dict(n_embd=16, n_layer=2, n_head=4, vocab_size=VOCAB,
                                                        n_positions=16, initializer_range=0.3)),  # multi-query
    "MistralForCausalLM": (tr.MistralConfig, dict(_GQA)),
    "Qwen2ForCausalLM": (tr.Qwen2Config, dict(_GQA)),
    "GemmaForCausalLM": (tr.GemmaConfig, dict(_SMALL, num_key_value_heads=1, head_dim=4)),  # scaled embedding
    "Phi3ForCausalLM": (tr.Phi3Config, dict(_GQA)),  # fused qkv and gate/up projections
    "StableLmForCausalLM": (tr.StableLmConfig, dict(_SMALL, num_key_value_heads=4, partial_rotary_factor=0.5)),
    "Starcoder2ForCausalLM": (tr.Starcoder2Config, dict(_GQA)),
    "GraniteForCausalLM": (tr.GraniteConfig, dict(_GQA)),
    "SmolLM3ForCausalLM": (tr.SmolLM3Config, dict(_GQA, no_rope_layers=[1, 0])),  # NoPE layer
}
# the fast engine's delta path (``bridge_blocks``; blocks checked in test_bridge_blocks), the others: stacked forwards
DELTA = ("GPTNeoXForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
         "Starcoder2ForCausalLM", "StableLmForCausalLM", "SmolLM3ForCausalLM", "GPTBigCodeForCausalLM",
         "GemmaForCausalLM", "OlmoForCausalLM")
# compared with the hook-only SPEC 7 ACDC (the others: the two engines with each other)
AGAINST_SPEC7 = ("GPTNeoXForCausalLM", "Qwen3ForCausalLM", "GPTBigCodeForCausalLM", "GemmaForCausalLM",
                 "MistralForCausalLM")

# architecture -> (config class, config, the error's words)
REFUSED = {
    "Gemma2ForCausalLM": (tr.Gemma2Config, dict(_GQA, head_dim=4), "a norm after each sublayer's output"),
    "Gemma3ForCausalLM": (tr.Gemma3TextConfig, dict(_GQA, head_dim=4), "a norm after each sublayer's output"),
    "Olmo2ForCausalLM": (tr.Olmo2Config, dict(_SMALL), "a norm after each sublayer's output"),
    "GraniteForCausalLM": (tr.GraniteConfig, dict(_GQA, residual_multiplier=0.5), "residual_multiplier=0.5"),
    "GPTJForCausalLM": (tr.GPTJConfig, dict(n_embd=16, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=16,
                                            rotary_dim=4), "cannot turn on use_attn_result"),
    "OPTForCausalLM": (tr.OPTConfig, dict(_SMALL, ffn_dim=32, word_embed_proj_dim=16), "cannot turn on use_attn_result"),
    "BloomForCausalLM": (tr.BloomConfig, dict(hidden_size=16, n_layer=2, n_head=4, vocab_size=VOCAB),
                         r"never fires \['blocks.0.hook_mlp_in'"),
    "FalconForCausalLM": (tr.FalconConfig, dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                                vocab_size=VOCAB), r"never fires \['blocks.0.hook_mlp_in'"),
    "CodeGenForCausalLM": (tr.CodeGenConfig, dict(n_embd=16, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=16,
                                                  rotary_dim=4), "forward fails with the hooks"),
    "GPTNeoForCausalLM": (tr.GPTNeoConfig, dict(hidden_size=16, num_layers=2, num_heads=4, vocab_size=VOCAB,
                                                max_position_embeddings=16, attention_types=[[["global"], 2]]),
                          "cannot turn on use_attn_result"),
    "PhiForCausalLM": (tr.PhiConfig, dict(_SMALL), r"never fires \['blocks.0.hook_mlp_in'"),
    "CohereForCausalLM": (tr.CohereConfig, dict(_GQA), r"never fires \['blocks.0.hook_mlp_in'"),
    "MptForCausalLM": (tr.MptConfig, dict(d_model=16, n_layers=2, n_heads=4, vocab_size=VOCAB, max_seq_len=16),
                       r"never fires \['blocks.0.attn.hook_q_input'"),
}


def build(arch: str, cfg_cls, kwargs: dict, seed: int = 0):
    torch.manual_seed(seed)
    cfg = cfg_cls(**{"pad_token_id": None, **kwargs})  # no pad token: random tokens may hold a default pad id,
    hf = getattr(tr, arch)(cfg).double().eval()     # which circuits refuses (circuits.validate_tokens)
    return build_bridge_from_module(hf, arch, hf_config=cfg, tokenizer=None, device="cpu")


@pytest.fixture(scope="module", params=sorted(WORKS))
def works(request):
    return request.param, build(request.param, *WORKS[request.param])


def test_the_graph_is_spec7s_and_holds_on_the_real_forward(works):
    arch, bridge = works
    graph = circuits.graph_of(bridge)
    assert sorted(graph.edges()) == sorted(spec7_edges(bridge.cfg))
    clean, _ = tokens(1)
    errors = circuits.check_graph(bridge, example_input=clean, rtol=1e-9)
    assert max(errors.values()) < 1e-10, arch


def test_every_edge_kept_or_removed_gives_the_clean_or_corrupted_logits(works):
    arch, bridge = works
    graph = circuits.graph_of(bridge)
    clean, corrupted = tokens(2)
    with torch.no_grad():
        want_clean, want_corrupted = bridge(clean), bridge(corrupted)
    torch.testing.assert_close(circuits.run_circuit(bridge, Circuit.full(graph), clean, corrupted), want_clean,
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(circuits.run_circuit(bridge, Circuit.empty(graph), clean, corrupted), want_corrupted,
                               rtol=0, atol=1e-10)


def _middling(bridge, clean, corrupted, metric="kl") -> float:
    """A threshold that keeps some edges and removes others, away from every effect of a low-threshold run: the
    middle of the widest gap between the middle half of its sorted effects. (An effect equal to the threshold is a
    tie that rounding decides: on families whose attention softmax HF takes in float32 the engines' effects differ
    by ~1e-8, and a tie would flip with them.)"""
    probe = circuits.acdc(bridge, clean, corrupted, threshold=1e-9, metric=metric, engine="fast")
    effects = sorted(v for v in probe.effects.values() if v > 0)
    middle = effects[len(effects) // 4: 3 * len(effects) // 4 + 1]
    gap, lo = max((b - a, a) for a, b in zip(middle, middle[1:]))
    return lo + gap / 2


def test_both_engines_find_the_same_circuit(works):
    arch, bridge = works
    clean, corrupted = tokens(3)
    threshold = _middling(bridge, clean, corrupted)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=threshold, engine="reference")
    fast = circuits.acdc(bridge, clean, corrupted, threshold=threshold, engine="fast")
    assert fast.settings["engine_used"] == "fast_attention"
    assert bridge_blocks.supported(bridge, clean.shape[1]) == (arch in DELTA)  # the delta path; else stacked forwards
    assert fast.settings["path"] == ("attention.delta" if arch in DELTA else "attention.stacked"), arch
    assert 0 < ref.n_edges < ref.n_total_edges, arch
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)
    # HF computes some norms and softmaxes in float32 on several of these families: effects agree to that precision
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-6
    if arch in AGAINST_SPEC7:
        assert ref.edges == spec7_acdc(bridge, clean, corrupted, threshold)


@pytest.mark.parametrize("arch", sorted(REFUSED))
def test_what_the_graph_cannot_describe_is_refused_by_name_before_work(arch):
    cfg_cls, kwargs, words = REFUSED[arch]
    bridge = build(arch, cfg_cls, kwargs)
    with pytest.raises(ValueError, match=f"{arch}: .*{words}"):
        circuits.graph_of(bridge)
    clean, corrupted = tokens(4)
    with pytest.raises(ValueError, match=arch):
        circuits.acdc(bridge, clean, corrupted, threshold=0.01)


@pytest.mark.parametrize("arch", ["GPTNeoXForCausalLM", "GPTBigCodeForCausalLM"])
def test_eap_is_the_directional_derivative(arch):
    """EAP on these graphs (GPT-NeoX's MLP reads the block input; GPT-BigCode's keys/values are one group) is
    d/dt M(z_r + t c_e) at t = 0 (central finite difference; both families normalise in float64)."""
    from test_attribution import _scaled_removal

    bridge = build(arch, *WORKS[arch])
    clean, corrupted = tokens(5)

    def metric(logits, full):
        return -(logits[:, -1, 3] - logits[:, -1, 5]).mean()

    scores = circuits.eap(bridge, clean, corrupted, metric, point="clean")
    assert set(scores) == set(circuits.graph_of(bridge).edges())
    h = 1e-5
    for e in [circuits.Edge("embed.hook_out", 0, "blocks.1.attn.hook_q_input", 2),
              circuits.Edge("blocks.0.attn.hook_result", 1, "blocks.1.attn.hook_k_input", 0),
              circuits.Edge("blocks.0.attn.hook_result", 2, "blocks.1.hook_mlp_in", 0),
              circuits.Edge("embed.hook_out", 0, "blocks.0.hook_mlp_in", 0),
              circuits.Edge("blocks.1.mlp.hook_out", 0, "blocks.1.hook_out", 0)]:
        up = _scaled_removal(bridge, clean, corrupted, e, h, metric)
        down = _scaled_removal(bridge, clean, corrupted, e, -h, metric)
        assert scores[e] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9), e


def test_a_non_additive_bridge_the_checks_do_not_know_is_caught_before_discovery(monkeypatch):
    """The declaration check is the backstop: with the architecture check off, Granite's scaled residual is still
    refused before any work, naming the receiver hook first and then the bridge's architecture."""
    from circuits.models import transformer_bridge

    monkeypatch.setattr(transformer_bridge, "_check_architecture", lambda bridge: None)
    bridge = build("GraniteForCausalLM", tr.GraniteConfig, dict(_GQA, residual_multiplier=0.5))
    clean, corrupted = tokens(6)
    for run in (lambda: circuits.acdc(bridge, clean, corrupted, threshold=0.01),
                lambda: circuits.eap(bridge, clean, corrupted)):
        with pytest.raises(ValueError, match=r"^blocks\.\d\.[a-z_.]+: the declared contributions do not sum.*"
                                             r"\[GraniteForCausalLM: the SPEC 7 graph does not describe"):
            run()


@pytest.mark.parametrize("arch, cfg_cls, kwargs, why", [
    ("MistralForCausalLM", tr.MistralConfig, dict(_GQA, sliding_window=3), "sliding-window attention over 3"),
    ("StableLmForCausalLM", tr.StableLmConfig, dict(_SMALL, num_key_value_heads=4, qk_layernorm=True), "qk_layernorm"),
    ("StableLmForCausalLM", tr.StableLmConfig, dict(_SMALL, num_key_value_heads=4), "odd rotary width"),  # 4 x 0.25
    ("GPT2LMHeadModel", tr.GPT2Config, dict(n_embd=16, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=16,
                                           initializer_range=0.3, scale_attn_by_inverse_layer_idx=True), "scaling"),
])
def test_what_the_delta_path_cannot_compute_goes_to_stacked_forwards(arch, cfg_cls, kwargs, why):
    """A family ``bridge_blocks`` reads, with a variant its blocks would compute differently (a sliding window shorter
    than the prompts, q/k norms, GPT-2's per-layer scaling): the fast engine uses stacked bridge forwards instead,
    and finds the reference's circuit."""
    bridge = build(arch, cfg_cls, kwargs)
    clean, corrupted = tokens(7)
    assert why in bridge_blocks.unsupported(bridge, clean.shape[1])
    threshold = _middling(bridge, clean, corrupted)
    ref = circuits.acdc(bridge, clean, corrupted, threshold=threshold, engine="reference")
    fast = circuits.acdc(bridge, clean, corrupted, threshold=threshold, engine="fast")
    assert 0 < ref.n_edges < ref.n_total_edges
    assert fast.edges == ref.edges and list(fast.effects) == list(ref.effects)


def test_eap_is_minus_transformer_lens_edge_attribution_on_a_parallel_block_model():
    """On GPT-NeoX TransformerLens's own edge attribution has no edge from a layer's heads into its MLP either, and
    ``eap`` at the corrupted run is minus its scores summed over positions (as on GPT-2, test_bridge)."""
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch
    from test_bridge import _task, _tl_edge

    bridge = build("GPTNeoXForCausalLM", *WORKS["GPTNeoXForCausalLM"])
    clean, corrupted = tokens(8)
    tl = attribution_patch(bridge, clean, corrupted, _task, EdgeAttributionConfig(granularity="edge"))
    summed: dict[circuits.Edge, float] = {}
    for (writer, reader), score in tl.edge_scores.items():
        e = circuits.Edge(*_tl_edge(writer, 2), *_tl_edge(reader, 2))
        summed[e] = summed.get(e, 0.0) + score
    ours = circuits.eap(bridge, clean, corrupted, lambda logits, full: _task(logits), point="corrupted")
    assert set(ours) == set(summed) == set(spec7_edges(bridge.cfg))
    scale = max(abs(v) for v in ours.values())
    assert scale > 1e-3 and max(abs(ours[e] + summed[e]) for e in ours) < 1e-12 * max(1.0, scale)
