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
    """Every edge, receivers in forward order (q, k, v inputs, MLP input per layer; then the output). With parallel
    attention and MLP (GPT-NeoX, ``cfg.parallel_attn_mlp``) the MLP reads the block's input, not its heads."""
    L, H = cfg.n_layers, cfg.n_heads
    kv = cfg.n_key_value_heads or H
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    senders: list[tuple[str, int]] = [("embed.hook_out", 0)]
    out = []
    for layer in range(L):
        for role, n in (("q", H), ("k", kv), ("v", kv)):
            out += [Edge(s, i, f"blocks.{layer}.attn.hook_{role}_input", r) for r in range(n) for s, i in senders]
        heads = [(f"blocks.{layer}.attn.hook_result", h) for h in range(H)]
        out += [Edge(s, i, f"blocks.{layer}.hook_mlp_in", 0) for s, i in (senders if parallel else senders + heads)]
        senders += heads
        senders.append((f"blocks.{layer}.mlp.hook_out", 0))
    return out + [Edge(s, i, f"blocks.{L - 1}.hook_out", 0) for s, i in senders]


def _sender_slice(act: torch.Tensor, edge: Edge) -> torch.Tensor:
    return act[:, :, edge.sender_index] if edge.sender.endswith("hook_result") else act


def spec7_run(bridge, kept: set, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """Logits of ``clean`` with every edge outside ``kept`` carrying the corrupted sender's output."""
    bridge.set_use_attn_result(True)
    bridge.set_use_split_qkv_input(True)
    bridge.set_use_hook_mlp_in(True)
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
    """SPEC 7's ACDC order, dead-node and clean-up rules. A head is one node with three input hooks; under
    grouped-query attention its key and value inputs are its group's (group ``h // (n_heads / n_kv)``), so a KV
    group's input node is an input of each head of the group: dead when none of them sends, and a head receives
    when its query input or its group's key or value input does."""
    edges = spec7_edges(bridge.cfg)
    n_heads = bridge.cfg.n_heads
    per_group = n_heads // (bridge.cfg.n_key_value_heads or n_heads)
    kept = set(edges)
    full = bridge(clean).detach()
    current = spec7_kl(spec7_run(bridge, kept, clean, corrupted), full)
    receivers = list(dict.fromkeys((e.receiver, e.receiver_index) for e in edges))

    def outs_of(recv: str, r: int) -> list:  # the sender nodes whose input this receiver node is
        layer = recv.split(".")[1]
        if "attn" not in recv:
            return [(f"blocks.{layer}.mlp.hook_out", 0)]
        if recv.endswith("hook_q_input") or per_group == 1:
            return [(f"blocks.{layer}.attn.hook_result", r)]
        return [(f"blocks.{layer}.attn.hook_result", h) for h in range(r * per_group, (r + 1) * per_group)]

    final = f"blocks.{bridge.cfg.n_layers - 1}.hook_out"
    hooks = list(dict.fromkeys(recv for recv, _ in receivers))
    order = [(h, r) for h in reversed(hooks) for x, r in receivers if x == h]  # hooks backwards, heads ascending
    for recv, r in order:
        into = [e for e in edges if (e.receiver, e.receiver_index) == (recv, r)]
        if recv != final and not any((e.sender, e.sender_index) in outs_of(recv, r) for e in kept):
            kept -= set(into)
            continue
        for e in into:
            if e not in kept:
                continue
            new = spec7_kl(spec7_run(bridge, kept - {e}, clean, corrupted), full)
            if new - current < threshold:
                kept.discard(e)
                current = new
    nodes = list(dict.fromkeys(n for recv, r in receivers if recv != final for n in outs_of(recv, r)))
    for node in nodes:  # clean-up, forward order: a node receiving nothing sends nothing
        inputs = [(x, i) for x, i in receivers if x != final and node in outs_of(x, i)]
        if not any((e.receiver, e.receiver_index) in inputs for e in kept):
            kept = {e for e in kept if (e.sender, e.sender_index) != node}
    return kept


# ---------------------------------------------------------------------------- item 1: the graph
def test_graph_of_a_bridge_has_spec7_edges_and_leaves_the_gated_hooks_as_they_were():
    bridge = gpt2_bridge()
    assert not bridge.cfg.use_attn_result and not bridge.cfg.use_split_qkv_input
    graph = circuits.graph_of(bridge)
    assert graph.n_edges == 110
    assert not (bridge.cfg.use_attn_result or bridge.cfg.use_split_qkv_input or bridge.cfg.use_hook_mlp_in)
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
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=4, hidden_size=16,
                       intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=16,
                       pad_token_id=None)  # the default pad 0 would be refused first (random tokens hold it)
    gemma2 = build_bridge_from_module(Gemma2ForCausalLM(cfg).double().eval(), "Gemma2ForCausalLM", hf_config=cfg,
                                      tokenizer=None, device="cpu")
    clean, corrupted = tokens(11)
    with pytest.raises(ValueError, match="Gemma2ForCausalLM: .*a norm after each sublayer's output"):
        circuits.acdc(gemma2, clean, corrupted, threshold=0.1)
    with pytest.raises(ValueError, match="a norm after each sublayer's output"):
        circuits.eap(gemma2, clean, corrupted)


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
    assert fast.edges == expected and (fast.settings["path"], ref.settings["path"]) == ("attention.delta", "reference")
    assert fast.effects.keys() == ref.effects.keys()  # the same edges tested, in the same order
    assert list(fast.effects) == list(ref.effects)


@pytest.mark.parametrize("threshold", [0.0, 0.003, 0.05])
def test_acdc_engines_agree_on_a_gqa_llama(llama, threshold):
    clean, corrupted = tokens(4)
    ref = circuits.acdc(llama, clean, corrupted, threshold=threshold, engine="reference")
    fast = circuits.acdc(llama, clean, corrupted, threshold=threshold, engine="fast")
    assert fast.settings["engine_used"] == "fast_attention" and fast.settings["path"] == "attention.delta"  # Llama
    assert fast.edges == ref.edges
    assert list(fast.effects) == list(ref.effects)
    # HF's Llama computes RMSNorm and the attention softmax in float32 even on a float64 model, so two orders of
    # float64 additions (the engines') can round differently there: effects agree to float32 precision
    assert max(abs(fast.effects[e] - ref.effects[e]) for e in ref.effects) < 1e-6
    assert (ref.n_edges < ref.n_total_edges) == (threshold > 0)  # KL of the full circuit is 0: at 0 nothing goes


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


# ---------------------------------------------------------------------------- item 4: EAP / EAP-IG
def _tl_edge(node, n_layers: int) -> tuple[str, int]:
    """TransformerLens's attribution-patching node -> (SPEC 7 hook, index)."""
    kind = node.kind
    if kind == "embed":
        return "embed.hook_out", 0
    if kind == "attn_head_out":
        return f"blocks.{node.layer}.attn.hook_result", node.head
    if kind in ("q_input", "k_input", "v_input"):
        return f"blocks.{node.layer}.attn.hook_{kind}", node.head
    if kind == "mlp_out":
        return f"blocks.{node.layer}.mlp.hook_out", 0
    if kind == "mlp_in":
        return f"blocks.{node.layer}.hook_mlp_in", 0
    assert kind == "logits"
    return f"blocks.{n_layers - 1}.hook_out", 0


def _task(logits: torch.Tensor) -> torch.Tensor:
    return (logits[..., -1, 3] - logits[..., -1, 5]).mean() + 0.5 * torch.log_softmax(logits[..., -2, :], -1)[..., 7].mean()


def test_eap_is_minus_transformer_lens_edge_attribution_summed_over_positions(gpt2):
    from transformer_lens.tools.analysis.attribution_patching import EdgeAttributionConfig, attribution_patch

    clean, corrupted = tokens(8)
    tl = attribution_patch(gpt2, clean, corrupted, _task, EdgeAttributionConfig(granularity="edge"))
    summed: dict[Edge, float] = {}
    for (writer, reader), score in tl.edge_scores.items():
        e = Edge(*_tl_edge(writer, 2), *_tl_edge(reader, 2))
        summed[e] = summed.get(e, 0.0) + score
    ours = circuits.eap(gpt2, clean, corrupted, lambda logits, full: _task(logits), point="corrupted")
    assert set(ours) == set(summed) and len(ours) == 110
    scale = max(abs(v) for v in ours.values())
    assert scale > 1e-3
    assert max(abs(ours[e] + summed[e]) for e in ours) < 1e-12 * max(1.0, scale)
    # the public port of TL's scores (names, sum over positions, sign) gives what the mapping above gives
    from circuits.models.tl_attribution import from_tl_attribution

    ported = from_tl_attribution(tl, gpt2)
    assert list(ported) == list(ours)
    assert all(abs(ported[e] + summed[e]) <= 1e-15 * max(1.0, abs(summed[e])) for e in ported)
    assert from_tl_attribution(tl.edge_scores, gpt2) == ported


def test_tl_scores_of_another_model_or_kind_are_refused_by_name(gpt2):
    from transformer_lens.tools.analysis.attribution_patching import Node

    from circuits.models.tl_attribution import from_tl_attribution

    head = Node("attn_head_out", layer=5, position=0, head=0)  # gpt2 has 2 layers
    with pytest.raises(ValueError, match="blocks.5.attn.hook_result.*does not have"):
        from_tl_attribution({(head, Node("logits", layer=1, position=0)): 1.0}, gpt2)
    with pytest.raises(ValueError, match="no edge scores|got none"):
        from_tl_attribution({}, gpt2)
    with pytest.raises(ValueError, match="kind 'resid'"):
        from_tl_attribution({(type("N", (), {"kind": "resid"})(), Node("logits", layer=1, position=0)): 1.0}, gpt2)


def test_eap_ig_averages_gradients_along_the_embedding_path(gpt2):
    """EAP-IG with k steps against a direct computation: gradients at receivers with the embedding set to
    a' + alpha (a - a'), alpha = (i + 1/2) / k, averaged; score = sum (a'_s - a_s) . grad_r over the r slice."""
    clean, corrupted = tokens(9)
    steps = 2
    acts: dict[str, dict[str, torch.Tensor]] = {"clean": {}, "bad": {}}
    edges = spec7_edges(gpt2.cfg)
    senders, receivers = sorted({e.sender for e in edges}), sorted({e.receiver for e in edges})
    for key, x in (("clean", clean), ("bad", corrupted)):
        gpt2.run_with_hooks(x, fwd_hooks=[(s, lambda t, hook, k=key: acts[k].__setitem__(hook.name, t.detach()))
                                          for s in senders])
    with torch.no_grad():
        full = gpt2(clean)
    grads: dict[str, torch.Tensor] = {}
    for i in range(steps):
        alpha = (i + 0.5) / steps
        mix = acts["bad"]["embed.hook_out"] + alpha * (acts["clean"]["embed.hook_out"] - acts["bad"]["embed.hook_out"])
        seen: dict[str, torch.Tensor] = {}

        def grab(t, hook):
            t = t.view_as(t)
            seen[hook.name] = t
            return t

        with torch.enable_grad():
            logits = gpt2.run_with_hooks(clean, fwd_hooks=[("embed.hook_out", lambda t, hook: mix.clone().requires_grad_())]
                                         + [(r, grab) for r in receivers])
            g = torch.autograd.grad(spec7_kl_tensor(logits, full), [seen[r] for r in receivers])
        for r, gr in zip(receivers, g):
            grads[r] = grads.get(r, 0) + gr / steps
    got = circuits.eap(gpt2, clean, corrupted, "kl", steps=steps)
    for e in edges:
        d = _sender_slice(acts["bad"][e.sender], e) - _sender_slice(acts["clean"][e.sender], e)
        gr = grads[e.receiver][:, :, e.receiver_index] if grads[e.receiver].dim() == 4 else grads[e.receiver]
        assert got[e] == pytest.approx(float((d * gr).sum()), rel=1e-9, abs=1e-13)


def spec7_kl_tensor(logits: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    p = torch.log_softmax(full[:, -1], -1)
    return (p.exp() * (p - torch.log_softmax(logits[:, -1], -1))).sum(-1).mean()


def test_every_circuits_function_takes_a_bridge(gpt2):
    clean, corrupted = tokens(10)
    good, bad = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    sweep = circuits.threshold_sweep(gpt2, clean, corrupted, [0.0, 1e9], engine="reference")
    assert sweep.circuits[0.0].n_edges >= sweep.circuits[1e9].n_edges == 0
    scores = circuits.eap(gpt2, clean, corrupted, metrics.logit_diff(good, bad))
    top = circuits.circuit_from_scores(scores, gpt2, top_n=20)
    assert top.n_edges == 20
    refined = circuits.eap_then_acdc(gpt2, clean, corrupted, top_n=20, threshold=0.001)
    assert refined.edges <= circuits.circuit_from_scores(circuits.eap(gpt2, clean, corrupted), gpt2, top_n=20).edges
    report = circuits.evaluate(gpt2, Circuit.full(circuits.graph_of(gpt2)), clean, corrupted,
                               clean_labels=good, corrupt_labels=bad)
    assert report["kl"] == pytest.approx(0.0, abs=1e-12) and report["logit_diff_recovery"] == pytest.approx(1.0)

    def ld(x):  # node_patching stacks copies of the batch: labels repeat
        k = x.shape[0] // BATCH
        rows = torch.arange(x.shape[0])
        return x[rows, -1, good.repeat(k)] - x[rows, -1, bad.repeat(k)]

    restored = circuits.node_patching(gpt2, clean, corrupted, ld)
    assert restored["blocks.1.attn.hook_result"].shape == (4,) and "blocks.0.mlp.hook_out" in restored


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), seq=st.integers(1, 6), n=st.integers(1, 3))
def test_kl_over_all_positions_is_the_mean_of_per_position_kls(seed, seq, n):
    g = torch.Generator().manual_seed(seed)
    full = torch.randn(3, seq, 5, generator=g, dtype=torch.float64)
    runs = torch.randn(n, 3, seq, 5, generator=g, dtype=torch.float64)
    every = metrics.kl(pos=None).many(runs, full)
    per = torch.stack([metrics.kl(pos=i).many(runs, full) for i in range(seq)]).mean(0)
    assert torch.allclose(every, per, rtol=1e-12, atol=1e-14)
    assert torch.allclose(metrics.kl().many(runs, full), metrics.kl(pos=seq - 1).many(runs, full), rtol=0, atol=0)
