"""Issue 24: a transformer user's mistakes get a named error before any work, and their bridge is left as it was.

"Before any work": the model never ran (a forward hook on the bridge counts calls), or, for the metric checks
that need the full and the empty circuit's logits, fewer forward passes than the first candidate edges of a
search would take.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import make_batches, make_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

import circuits
from circuits import Circuit, metrics

pytest.importorskip("transformer_lens.model_bridge")
from transformer_lens.model_bridge.sources import build_bridge_from_module  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

from test_bridge import VOCAB, gpt2_bridge, tokens  # noqa: E402

GATED = ("use_attn_result", "use_split_qkv_input", "use_hook_mlp_in")


def counted(model):
    """``model`` with a forward hook counting its calls (the list it appends to)."""
    calls: list[int] = []
    model.register_forward_hook(lambda *a: calls.append(1))
    return model, calls


def _full(model):
    return Circuit.full(circuits.graph_of(model), settings={"algorithm": "acdc"})


def _last_ld(logits):
    return logits[:, -1, 0] - logits[:, -1, 1]


ENTRY = {
    "acdc": lambda m, c, d: circuits.acdc(m, c, d, threshold=0.1),
    "acdc_reference": lambda m, c, d: circuits.acdc(m, c, d, threshold=0.1, engine="reference"),
    "eap": lambda m, c, d: circuits.eap(m, c, d),
    "run_circuit": lambda m, c, d: circuits.run_circuit(m, _full(gpt2_bridge()), c, d, check_model=False),
    "evaluate": lambda m, c, d: circuits.evaluate(m, _full(gpt2_bridge()), c, d, check_model=False),
    "node_patching": lambda m, c, d: circuits.node_patching(m, c, d, logit_diff=_last_ld),
}


def _high_id():
    c, d = tokens(0)
    c[1, 2] = VOCAB
    return c, d, rf"token ids \[{VOCAB}\] outside the vocabulary 0..{VOCAB - 1}"


def _negative_id():
    c, d = tokens(0)
    d[0, 0] = -3
    return c, d, r"corrupted holds token ids \[-3\] outside the vocabulary"


def _too_long():
    c, d = tokens(0, seq=17)  # the bridge's n_positions is 16
    return c, d, "has 17 positions but the model's context is 16"


def _meta():
    c, d = tokens(0)
    return c.to("meta"), d.to("meta"), "clean is on the meta device"


TOKEN_CASES = {"id_too_high": _high_id, "negative_id": _negative_id, "too_long": _too_long, "meta": _meta}


@pytest.mark.parametrize("entry", list(ENTRY))
@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_bad_tokens_are_refused_before_the_bridge_runs(entry, case):
    bridge, calls = counted(gpt2_bridge())
    clean, corrupted, message = TOKEN_CASES[case]()
    with pytest.raises(ValueError, match=message):
        ENTRY[entry](bridge, clean, corrupted)
    assert calls == []


def test_a_llama_past_its_rotary_context_is_refused():
    """Rotary positions run past the context without an IndexError: the logits would be silently meaningless."""
    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=1, num_attention_heads=2, hidden_size=8, intermediate_size=16, vocab_size=VOCAB,
                      max_position_embeddings=6)
    bridge, calls = counted(build_bridge_from_module(LlamaForCausalLM(cfg).double().eval(), "LlamaForCausalLM",
                                                     hf_config=cfg, tokenizer=None, device="cpu"))
    clean, corrupted = tokens(1, seq=7)
    with pytest.raises(ValueError, match="7 positions but the model's context is 6.*max_position_embeddings"):
        circuits.acdc(bridge, clean, corrupted, threshold=0.1)
    assert calls == []
    circuits.run_circuit(bridge, _full(bridge), clean[:, :6], corrupted[:, :6])  # at the context length: accepted


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, VOCAB + 2), min_size=1, max_size=12))
def test_token_ids_are_refused_exactly_when_one_is_outside_the_vocabulary(ids):
    from circuits.validate_tokens import check_token_ids

    x = torch.tensor([ids])
    outside = any(i < 0 or i >= VOCAB for i in ids)
    if outside:
        with pytest.raises(ValueError, match="outside the vocabulary"):
            check_token_ids(_GPT2, clean=x)
    else:
        check_token_ids(_GPT2, clean=x)


_GPT2 = gpt2_bridge()


def test_the_pad_token_of_a_bridge_without_tokenizer_comes_from_its_config():
    """tokenizer=None: the Hugging Face config's pad_token_id is the pad token (GPT-2's BOS/EOS reuse is not)."""
    from circuits.validate_tokens import pad_token_id

    assert pad_token_id(_GPT2) is None  # the README's build: GPT-2 has no pad token, nothing to refuse
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB, n_positions=16, pad_token_id=3)
    bridge, calls = counted(build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel",
                                                     hf_config=cfg, tokenizer=None, device="cpu"))
    assert pad_token_id(bridge) == 3
    clean, corrupted = tokens(2)
    clean[0, 0] = 3
    with pytest.raises(ValueError, match="clean contains the pad token 3: padded batches are not supported"):
        circuits.acdc(bridge, clean, corrupted, threshold=0.1)
    assert calls == []
    cfg_eos = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB, pad_token_id=5, eos_token_id=5)
    eos = build_bridge_from_module(GPT2LMHeadModel(cfg_eos).double().eval(), "GPT2LMHeadModel", hf_config=cfg_eos,
                                   tokenizer=None, device="cpu")
    assert pad_token_id(eos) is None  # pad reusing EOS marks no padding


# ---------------------------------------------------------------------------- metrics
def _nan(logits, full):
    return (logits - full).sum() * float("nan")


def _inf(logits, full):
    return torch.tensor(float("inf"))


def _per_example(logits, full):
    return (logits - full).pow(2).flatten(1).sum(1)


METRICS = {"nan": (_nan, "the metric is nan"), "inf": (_inf, "the metric is inf"),
           "per_example": (_per_example, r"one number per batch.*returned shape \(4,\)")}
SEARCHES = {
    "acdc_fast": lambda m, c, d, f: circuits.acdc(m, c, d, threshold=0.1, metric=f),
    "acdc_reference": lambda m, c, d, f: circuits.acdc(m, c, d, threshold=0.1, metric=f, engine="reference"),
    "eap": lambda m, c, d, f: circuits.eap(m, c, d, metric=f),
    "eap_ig": lambda m, c, d, f: circuits.eap(m, c, d, metric=f, steps=3),
    "eap_then_acdc": lambda m, c, d, f: circuits.eap_then_acdc(m, c, d, metric=f, top_n=5, threshold=0.1, steps=2),
}


@pytest.mark.parametrize("model_kind", ["bridge", "mlp"])
@pytest.mark.parametrize("search", list(SEARCHES))
@pytest.mark.parametrize("bad", list(METRICS))
def test_a_nan_infinite_or_per_example_metric_is_refused_before_the_search(model_kind, search, bad):
    """The metric is checked once on the full and the empty circuit's logits: at most the few forward passes the
    set-up needs (graph probe, declaration check, corrupted and clean runs, the empty circuit), far fewer than
    the search's one pass per tested edge (110 edges on the bridge, 32 on the MLP)."""
    if model_kind == "bridge":
        model, (clean, corrupted) = gpt2_bridge(), tokens(3)
    else:
        model, (clean, corrupted) = make_mlp(0), make_batches(0, batch=4)
    model, calls = counted(model)
    metric, message = METRICS[bad]
    with pytest.raises(ValueError, match=message):
        SEARCHES[search](model, clean, corrupted, metric)
    assert len(calls) <= 8


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_node_patching_refuses_a_non_finite_logit_difference_before_patching(bad):
    bridge, calls = counted(gpt2_bridge())
    value = float(bad)
    with pytest.raises(ValueError, match="logit_diff returned NaN or infinite values"):
        circuits.node_patching(bridge, *tokens(3), logit_diff=lambda logits: _last_ld(logits) * value)
    assert len(calls) <= 8


def test_logit_diff_labels_beyond_the_vocabulary_are_refused_before_the_search():
    bridge, calls = counted(gpt2_bridge())
    metric = metrics.logit_diff(torch.tensor([0, 1, VOCAB + 4, 2]), torch.tensor([1, 0, 2, 3]))
    with pytest.raises(ValueError, match=rf"label {VOCAB + 4} but the logits have {VOCAB} classes"):
        circuits.acdc(bridge, *tokens(3), threshold=0.1, metric=metric)
    assert len(calls) <= 8


def test_per_example_positions_out_of_range_are_named_before_the_search():
    bridge, calls = counted(gpt2_bridge())
    metric = metrics.kl(pos=torch.tensor([0, 4, 9, -1]))
    with pytest.raises(ValueError, match=r"positions \[9\] \(examples \[2\]\) outside sequences of length 5"):
        circuits.acdc(bridge, *tokens(3), threshold=0.1, metric=metric)
    assert len(calls) <= 8
    with pytest.raises(ValueError, match="3 rows for a batch of 4"):
        circuits.acdc(bridge, *tokens(3), threshold=0.1, metric=metrics.kl(pos=torch.tensor([0, 1, 2])))


# ---------------------------------------------------------------------------- identical clean and corrupted
def test_identical_labels_are_an_error_and_some_identical_a_warning():
    y = torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="clean_labels and corrupt_labels are identical"):
        metrics.logit_diff(y, y.clone())
    with pytest.warns(UserWarning, match="1 of 4 examples have the same clean and corrupt label"):
        metrics.logit_diff(y, torch.tensor([0, 2, 0, 0]))


@pytest.mark.parametrize("search", ["acdc_fast", "acdc_reference", "eap"])
def test_identical_batches_under_resample_are_refused_before_the_search(search):
    bridge, calls = counted(gpt2_bridge())
    clean, _ = tokens(5)
    with pytest.raises(ValueError, match="clean and corrupted are identical, so every edge's effect is exactly 0"):
        SEARCHES[search](bridge, clean, clean.clone(), "kl")
    assert len(calls) <= 8


def test_identical_rows_warn_and_zero_ablation_accepts_identical_batches():
    model = make_mlp(1)
    clean, corrupted = make_batches(1, batch=4)
    corrupted[2] = clean[2]
    with pytest.warns(UserWarning, match=r"1 of 4 clean rows equal their corrupted row \(rows \[2\]"):
        circuits.acdc(model, clean, corrupted, threshold=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        circuit = circuits.acdc(model, clean, clean.clone(), threshold=1e-9, ablation="zero")
    assert circuit.n_edges > 0  # zero ablation never reads the corrupted batch: a real circuit


# ---------------------------------------------------------------------------- the user's bridge is left alone
def _failing_metric(after: int):
    """KL that raises on its ``after``-th call: an exception in the middle of a search."""
    n = [0]

    def metric(logits, full):
        n[0] += 1
        if n[0] > after:
            raise RuntimeError("interrupted mid-search")
        return metrics.kl()(logits, full)

    return metric


CALLS = {
    "acdc": lambda b, c, d: circuits.acdc(b, c, d, threshold=0.01),
    "acdc_reference": lambda b, c, d: circuits.acdc(b, c, d, threshold=0.01, engine="reference"),
    "eap": lambda b, c, d: circuits.eap(b, c, d),
    "eap_then_acdc": lambda b, c, d: circuits.eap_then_acdc(b, c, d, top_n=5, threshold=0.01),
    "run_circuit": lambda b, c, d: circuits.run_circuit(b, Circuit.empty(circuits.graph_of(gpt2_bridge())), c, d,
                                                        check_model=False),
    "evaluate": lambda b, c, d: circuits.evaluate(b, Circuit.empty(circuits.graph_of(gpt2_bridge())), c, d,
                                                  check_model=False),
    "node_patching": lambda b, c, d: circuits.node_patching(b, c, d, logit_diff=_last_ld),
    "threshold_sweep": lambda b, c, d: circuits.threshold_sweep(b, c, d, [0.01, 0.1]),
    "failing_acdc": lambda b, c, d: circuits.acdc(b, c, d, threshold=0.01, metric=_failing_metric(5),
                                                  engine="reference"),
}


@pytest.mark.parametrize("user_setting", [False, True])
@pytest.mark.parametrize("call", list(CALLS))
def test_the_gated_hook_settings_are_restored_also_after_an_exception(call, user_setting):
    bridge = gpt2_bridge()
    for flag in GATED:
        getattr(bridge, f"set_{flag}")(user_setting)
    clean, corrupted = tokens(6)
    if call == "failing_acdc":
        with pytest.raises(RuntimeError, match="interrupted mid-search"):
            CALLS[call](bridge, clean, corrupted)
    else:
        CALLS[call](bridge, clean, corrupted)
    assert {flag: getattr(bridge.cfg, flag) for flag in GATED} == dict.fromkeys(GATED, user_setting)
    if not user_setting:  # the hooks are really off: a plain forward fires no per-head result
        _, cache = bridge.run_with_cache(clean)
        assert "blocks.0.attn.hook_result" not in cache


def test_a_second_discovery_after_the_restore_finds_the_same_circuit():
    bridge = gpt2_bridge()
    clean, corrupted = tokens(6)
    first = circuits.acdc(bridge, clean, corrupted, threshold=0.01)
    assert not bridge.cfg.use_attn_result
    assert circuits.acdc(bridge, clean, corrupted, threshold=0.01).edges == first.edges


# ---------------------------------------------------------------------------- arguments and wrong model types
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(top_n=-1, threshold=0.1), ValueError, "top_n must be a non-negative integer"),
    (dict(top_n=2.5, threshold=0.1), ValueError, "top_n must be a non-negative integer"),
    (dict(top_n=3, threshold=-1.0), ValueError, "threshold must be >= 0"),
    (dict(top_n=3, threshold=0.1, thresold=0.2), TypeError, r"keyword arguments \['thresold'\] that acdc does not take"),
    (dict(top_n=3, threshold=0.1, edges=[]), TypeError, r"\['edges'\].*eap_then_acdc sets itself"),
    (dict(top_n=3, threshold=0.1, engine="quick"), ValueError, "unknown engine 'quick'"),
    (dict(top_n=3, threshold=0.1, ablation="mean"), ValueError, "EAP, which scores resample ablation only"),
])
def test_eap_then_acdc_checks_its_arguments_before_eap_runs(kwargs, error, message):
    bridge, calls = counted(gpt2_bridge())
    with pytest.raises(error, match=message):
        circuits.eap_then_acdc(bridge, *tokens(7), steps=4, **kwargs)
    assert calls == []


def test_an_unwrapped_hugging_face_model_is_told_how_to_wrap_it():
    torch.manual_seed(0)
    hf, calls = counted(GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB)).eval())
    with pytest.raises(TypeError, match=r"GPT2LMHeadModel is a Hugging Face model.*wrap it in a TransformerBridge"
                                        r".*build_bridge_from_module\(model, 'GPT2LMHeadModel', hf_config=model.config"):
        circuits.acdc(hf, *tokens(0), threshold=0.1)
    assert calls == []


def test_the_model_passed_by_name_is_restored_too():
    bridge = gpt2_bridge()
    clean, corrupted = tokens(6)
    circuits.run_circuit(model=bridge, circuit=Circuit.empty(circuits.graph_of(gpt2_bridge())), clean=clean,
                         corrupted=corrupted, check_model=False)
    assert not any(getattr(bridge.cfg, flag) for flag in GATED)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=2, max_size=4))
def test_a_pad_token_shared_with_eos_is_refused_exactly_when_its_runs_are_ragged(rows):
    """Pad token = EOS (``tok.pad_token = tok.eos_token``): a batch is refused iff its rows start, or end, with runs
    of that token of different lengths (what padding makes); counted here with plain Python."""
    from types import SimpleNamespace

    from circuits.validate_tokens import check_no_padding

    model = SimpleNamespace(tokenizer=SimpleNamespace(pad_token_id=0, eos_token_id=0, bos_token_id=1))

    def run(row):
        n = 0
        for t in row:
            if t != 0:
                break
            n += 1
        return n

    ragged = len({run(r) for r in rows}) > 1 or len({run(r[::-1]) for r in rows}) > 1
    x = torch.tensor(rows)
    if ragged:
        with pytest.raises(ValueError, match="clean looks padded"):
            check_no_padding(model, clean=x)
    else:
        check_no_padding(model, clean=x)
