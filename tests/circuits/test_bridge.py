"""Circuits on TransformerLens 4 bridges (SPEC 7), checked against a hook-only SPEC 7 written here.

The reference below (``spec7_*``) patches receivers with explicit per-edge loops over the canonical hook
names and runs the ACDC order of SPEC 7 itself; it shares no code with ``circuits``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits import Circuit, Edge, metrics

pytest.importorskip("transformer_lens.model_bridge")
from transformer_lens.model_bridge.sources import build_bridge_from_module  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

VOCAB, SEQ, BATCH = 20, 5, 4


def gpt2_bridge(seed: int = 0, layers: int = 2, heads: int = 4, d: int = 16):
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=layers, n_head=heads, n_embd=d, vocab_size=VOCAB, n_positions=16, initializer_range=0.3)
    hf = GPT2LMHeadModel(cfg).double().eval()
    return build_bridge_from_module(hf, "GPT2LMHeadModel", hf_config=cfg, tokenizer=None, device="cpu")


def llama_bridge(seed: int = 0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=16,
                      intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=16, initializer_range=0.3)
    hf = LlamaForCausalLM(cfg).double().eval()
    return build_bridge_from_module(hf, "LlamaForCausalLM", hf_config=cfg, tokenizer=None, device="cpu")


def tokens(seed: int, batch: int = BATCH, seq: int = SEQ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, seq), generator=g), torch.randint(0, VOCAB, (batch, seq), generator=g)


_GPT2, _LLAMA = gpt2_bridge(), llama_bridge()  # shared, never modified (hypothesis tests cannot take fixtures)


@pytest.fixture(scope="module")
def gpt2():
    return _GPT2


@pytest.fixture(scope="module")
def llama():
    return _LLAMA


# ---------------------------------------------------------------------------- the hook-only SPEC 7
def spec7_edges(cfg) -> list[Edge]:
    """Every edge, receivers in forward order (q, k, v inputs, MLP input per layer; then the output)."""
    L, H = cfg.n_layers, cfg.n_heads
    kv = cfg.n_key_value_heads or H
    senders: list[tuple[str, int]] = [("embed.hook_out", 0)]
    out = []
    for layer in range(L):
        for role, n in (("q", H), ("k", kv), ("v", kv)):
            out += [Edge(s, i, f"blocks.{layer}.attn.hook_{role}_input", r) for r in range(n) for s, i in senders]
        senders += [(f"blocks.{layer}.attn.hook_result", h) for h in range(H)]
        out += [Edge(s, i, f"blocks.{layer}.hook_mlp_in", 0) for s, i in senders]
        senders.append((f"blocks.{layer}.mlp.hook_out", 0))
    return out + [Edge(s, i, f"blocks.{L - 1}.hook_out", 0) for s, i in senders]


def _sender_slice(act: torch.Tensor, edge: Edge) -> torch.Tensor:
    return act[:, :, edge.sender_index] if edge.sender.endswith("hook_result") else act


def spec7_run(bridge, kept: set, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """Logits of ``clean`` with every edge outside ``kept`` carrying the corrupted sender's output."""
    all_edges = spec7_edges(bridge.cfg)
    senders = sorted({e.sender for e in all_edges})
    bad: dict[str, torch.Tensor] = {}

    def save(t, hook):
        bad[hook.name] = t.clone()

    with torch.no_grad():
        bridge.run_with_hooks(corrupted, fwd_hooks=[(s, save) for s in senders])
    removed: dict[str, list[Edge]] = {}
    for e in all_edges:
        if e not in kept:
            removed.setdefault(e.receiver, []).append(e)
    now: dict[str, torch.Tensor] = {}

    def sender(t, hook):
        now[hook.name] = t
        return t

    def receiver(t, hook):
        t = t.clone()
        for e in removed.get(hook.name, []):
            d = _sender_slice(bad[e.sender], e) - _sender_slice(now[e.sender], e)
            if t.dim() == 4:
                t[:, :, e.receiver_index] += d
            else:
                t += d
        return t

    receivers = sorted({e.receiver for e in all_edges})
    with torch.no_grad():
        return bridge.run_with_hooks(clean, fwd_hooks=[(s, sender) for s in senders] + [(r, receiver) for r in receivers])


def spec7_kl(logits: torch.Tensor, full: torch.Tensor) -> float:
    p = torch.log_softmax(full[:, -1], -1)
    return float((p.exp() * (p - torch.log_softmax(logits[:, -1], -1))).sum(-1).mean())


def _head(hook: str, i: int):
    return (hook.split(".")[1], i)


def spec7_acdc(bridge, clean, corrupted, threshold: float) -> set:
    """SPEC 7's ACDC order, dead-node and clean-up rules on full multi-head attention."""
    edges = spec7_edges(bridge.cfg)
    kept = set(edges)
    full = bridge(clean).detach()
    current = spec7_kl(spec7_run(bridge, kept, clean, corrupted), full)
    receivers = list(dict.fromkeys((e.receiver, e.receiver_index) for e in edges))

    def out_of(recv: str, r: int):  # the sender node whose input this receiver node is
        layer = recv.split(".")[1]
        return (f"blocks.{layer}.attn.hook_result", r) if "attn" in recv else (f"blocks.{layer}.mlp.hook_out", 0)

    final = f"blocks.{bridge.cfg.n_layers - 1}.hook_out"
    hooks = list(dict.fromkeys(recv for recv, _ in receivers))
    order = [(h, r) for h in reversed(hooks) for x, r in receivers if x == h]  # hooks backwards, heads ascending
    for recv, r in order:
        into = [e for e in edges if (e.receiver, e.receiver_index) == (recv, r)]
        if recv != final and not any((e.sender, e.sender_index) == out_of(recv, r) for e in kept):
            kept -= set(into)
            continue
        for e in into:
            if e not in kept:
                continue
            new = spec7_kl(spec7_run(bridge, kept - {e}, clean, corrupted), full)
            if new - current < threshold:
                kept.discard(e)
                current = new
    for recv, r in receivers:  # clean-up, forward order: a node receiving nothing sends nothing
        if recv == final:
            continue
        node = out_of(recv, r)
        inputs = [(x, i) for x, i in receivers if x != final and out_of(x, i) == node]
        if not any((e.receiver, e.receiver_index) in inputs for e in kept):
            kept = {e for e in kept if (e.sender, e.sender_index) != node}
    return kept


# ---------------------------------------------------------------------------- item 1: the graph
def test_graph_of_a_bridge_has_spec7_edges_and_turns_on_the_gated_hooks():
    bridge = gpt2_bridge()
    assert not bridge.cfg.use_attn_result and not bridge.cfg.use_split_qkv_input
    graph = circuits.graph_of(bridge)
    assert graph.n_edges == 110
    assert bridge.cfg.use_attn_result and bridge.cfg.use_split_qkv_input and bridge.cfg.use_hook_mlp_in
    assert list(graph.edges()) == spec7_edges(bridge.cfg)


def test_graph_of_a_gqa_llama_bridge_has_kv_receivers_per_group(llama):
    graph = circuits.graph_of(llama)
    assert sorted(graph.edges()) == sorted(spec7_edges(llama.cfg))
    assert graph.nodes["blocks.1.attn.hook_k_input"].count == 2 and graph.nodes["blocks.1.attn.hook_q_input"].count == 4


@pytest.mark.parametrize("make", [gpt2_bridge, llama_bridge])
def test_declaration_holds_on_the_real_forward(make):
    clean, _ = tokens(1)
    errors = circuits.check_graph(make(), example_input=clean, rtol=1e-9)
    assert max(errors.values()) < 1e-12


def test_unsupported_architecture_is_refused_naming_the_feature():
    bridge = gpt2_bridge()
    bridge.cfg.parallel_attn_mlp = True
    with pytest.raises(ValueError, match="parallel"):
        circuits.graph_of(bridge)


# ---------------------------------------------------------------------------- item 2: exactness
@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_run_circuit_full_and_empty_give_clean_and_corrupted_logits(which, request):
    bridge = request.getfixturevalue(which)
    graph = circuits.graph_of(bridge)
    clean, corrupted = tokens(2)
    full = circuits.run_circuit(bridge, Circuit.full(graph), clean, corrupted)
    empty = circuits.run_circuit(bridge, Circuit.empty(graph), clean, corrupted)
    with torch.no_grad():
        assert torch.allclose(full, bridge(clean), rtol=0, atol=1e-12)
        assert torch.allclose(empty, bridge(corrupted), rtol=0, atol=1e-12)
        assert not torch.allclose(bridge(clean), bridge(corrupted), atol=1e-3)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.sampled_from(["gpt2", "llama"]))
def test_run_circuit_matches_the_hook_only_spec7(seed, which):
    bridge = {"gpt2": _GPT2, "llama": _LLAMA}[which]
    edges = spec7_edges(bridge.cfg)
    g = torch.Generator().manual_seed(seed)
    kept = {e for e in edges if torch.rand((), generator=g) < 0.5}
    clean, corrupted = tokens(seed)
    got = circuits.run_circuit(bridge, Circuit.from_edges(circuits.graph_of(bridge), kept), clean, corrupted)
    assert torch.allclose(got, spec7_run(bridge, kept, clean, corrupted), rtol=0, atol=1e-12)


def test_acdc_both_engines_match_the_hook_only_acdc_on_gpt2(gpt2):
    clean, corrupted = tokens(3)
    threshold = 0.02
    expected = spec7_acdc(gpt2, clean, corrupted, threshold)
    ref = circuits.acdc(gpt2, clean, corrupted, threshold=threshold, engine="reference")
    fast = circuits.acdc(gpt2, clean, corrupted, threshold=threshold, engine="fast")
    assert 0 < len(expected) < 110
    assert ref.edges == expected
    assert fast.edges == expected


def test_acdc_engines_agree_on_a_gqa_llama(llama):
    clean, corrupted = tokens(4)
    ref = circuits.acdc(llama, clean, corrupted, threshold=0.01, engine="reference")
    fast = circuits.acdc(llama, clean, corrupted, threshold=0.01, engine="fast")
    assert fast.edges == ref.edges
    assert 0 < ref.n_edges < ref.n_total_edges


# ---------------------------------------------------------------------------- item 5: sequences
def test_kl_reads_the_last_position_by_default_and_pos_chooses(gpt2):
    clean, corrupted = tokens(5)
    with torch.no_grad():
        a, b = gpt2(corrupted), gpt2(clean)

    def ref_kl(rows_a, rows_b):
        p = torch.log_softmax(rows_b, -1)
        return float((p.exp() * (p - torch.log_softmax(rows_a, -1))).sum(-1).mean())

    assert float(metrics.kl()(a, b)) == pytest.approx(ref_kl(a[:, -1], b[:, -1]), rel=1e-12)
    assert float(metrics.kl(pos=1)(a, b)) == pytest.approx(ref_kl(a[:, 1], b[:, 1]), rel=1e-12)
    assert float(metrics.kl(pos=slice(1, 3))(a, b)) == pytest.approx(ref_kl(a[:, 1:3], b[:, 1:3]), rel=1e-12)
    per = torch.tensor([0, 4, 2, 1])
    rows = torch.arange(BATCH)
    assert float(metrics.kl(pos=per)(a, b)) == pytest.approx(ref_kl(a[rows, per], b[rows, per]), rel=1e-12)
    # batched form (the fast engine's): two stacked runs
    stacked = torch.stack([a, b])
    assert torch.allclose(metrics.kl(pos=per).many(stacked, b), torch.tensor([ref_kl(a[rows, per], b[rows, per]), 0.0],
                                                                              dtype=a.dtype), atol=1e-12)


def test_logit_diff_reads_the_chosen_position(gpt2):
    clean, _ = tokens(6)
    with torch.no_grad():
        x = gpt2(clean)
    good, bad = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    rows = torch.arange(BATCH)
    assert float(metrics.logit_diff(good, bad)(x, x)) == pytest.approx(
        -float((x[rows, -1, good] - x[rows, -1, bad]).mean()), rel=1e-12)
    per = torch.tensor([3, 0, 1, 2])
    assert float(metrics.logit_diff(good, bad, pos=per)(x, x)) == pytest.approx(
        -float((x[rows, per, good] - x[rows, per, bad]).mean()), rel=1e-12)


def test_bad_positions_are_refused():
    with pytest.raises(ValueError, match="pos"):
        metrics.kl(pos=1.5)
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="out of range"):
        metrics.kl(pos=7)(x, x)


def test_mismatched_padded_or_training_inputs_are_refused_before_work(gpt2):
    clean, corrupted = tokens(7)
    with pytest.raises(ValueError, match="shapes differ"):
        circuits.acdc(gpt2, clean, corrupted[:, :-1], threshold=0.1)
    with pytest.raises(ValueError, match="attention_mask"):
        circuits.acdc(gpt2, {"input_ids": clean, "attention_mask": torch.ones_like(clean)}, corrupted, threshold=0.1)
    bridge = gpt2_bridge()
    bridge.train()
    with pytest.raises(ValueError, match="eval"):
        circuits.eap(bridge, clean, corrupted)
