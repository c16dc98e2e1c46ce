"""A Llama-style module (``TrainConfig(arch="llama")``: RMSNorm, gated MLP, rotary, grouped-query attention) trained
under the five regimes; its checkpoint loads back as a bridge with the trained module's logits, and ACDC runs on it.

Hugging Face's stock ``LlamaRMSNorm`` (float32 inside) is used throughout: the module, the loaded module and the
bridge all compute the norm the same way, so they are compared like with like."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import circuits
from hooked_bimt.transformer import InductionTask, ModularAdditionTask, TrainConfig, load, save, train
from training_checks import assert_regimes_differ_as_spec_2_says

LLAMA = TrainConfig(arch="llama", d_model=8, n_head=4, d_mlp=16, steps=24, batch=16, swap_every=8, lambda_=0.05,
                    dtype="float64")
TASK = ModularAdditionTask(p=7, n_prompts=8)
REGIMES = ("vanilla", "l1", "l1_local", "l1_swap", "bimt")


@pytest.fixture(scope="module")
def runs():
    return {r: train(r, TASK, LLAMA, seed=0) for r in REGIMES}


def test_the_trained_module_is_a_grouped_query_llama(runs):
    from transformers import LlamaForCausalLM

    module = runs["bimt"].module
    assert type(module) is LlamaForCausalLM and LLAMA.n_kv_head == 2
    assert module.model.layers[0].self_attn.k_proj.weight.shape == (4, 8)  # 2 key/value heads of d_head 2
    assert module.lm_head.weight is not module.model.embed_tokens.weight
    assert module.config._attn_implementation == "eager"


def test_llama_regimes_penalise_and_swap_as_spec_2_says(runs):
    assert_regimes_differ_as_spec_2_says(runs, LLAMA.steps, [8, 16, 24])
    assert all(math.isfinite(x) for r in runs for x in runs[r].history["loss"])


def test_the_same_seed_gives_the_same_llama(runs):
    again = train("bimt", TASK, LLAMA, seed=0)
    for p, q in zip(runs["bimt"].module.parameters(), again.module.parameters()):
        assert torch.equal(p, q)


def test_llama_trains_on_induction_too():
    result = train("bimt", InductionTask(), dataclasses.replace(LLAMA, steps=4, swap_every=2), seed=1)
    assert len(result.history["loss"]) == 4 and all(math.isfinite(x) for x in result.history["loss"])
    assert [s for s, _ in result.history["swaps"]] == [2, 4]


def test_llama_checkpoint_loads_as_a_bridge_with_the_trained_logits(runs, tmp_path):
    from transformer_lens.model_bridge import TransformerBridge

    result = runs["bimt"]
    save(result, tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert isinstance(loaded.bridge, TransformerBridge) and loaded.config == LLAMA and loaded.regime.name == "bimt"
    assert loaded.module.config._attn_implementation == "eager"
    tokens = TASK.clean
    want = result.module(tokens).logits.detach()
    assert want.dtype == torch.float64
    torch.testing.assert_close(loaded.bridge(tokens).detach(), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(loaded.module(tokens).logits.detach(), want, rtol=0, atol=1e-12)
    assert not torch.allclose(loaded.bridge(TASK.corrupted).detach(), want)  # the comparison can fail


def test_acdc_runs_on_the_loaded_llama_bridge_on_the_delta_path(runs, tmp_path):
    save(runs["bimt"], tmp_path / "m")
    loaded = load(tmp_path / "m")
    task = loaded.task
    kw = dict(threshold=0.01, metric=task.metric)
    fast = circuits.acdc(loaded.bridge, task.clean, task.corrupted, engine="fast", **kw)
    ref = circuits.acdc(loaded.bridge, task.clean, task.corrupted, engine="reference", **kw)
    assert fast.settings["path"] == "attention.delta"
    assert fast.edges == ref.edges and fast.n_total_edges > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"arch": "bert"}, "arch must be one of 'gpt2', 'llama'"), ({"n_kv_head": 2}, "n_kv_head is Llama's"),
    ({"arch": "llama", "n_head": 4, "n_kv_head": 3}, "divide n_head"),
    ({"arch": "llama", "d_model": 12, "n_head": 4}, "even head size")])
def test_arch_config_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_llama_key_value_heads_default_to_half_the_query_heads():
    assert TrainConfig(arch="llama", n_head=4).n_kv_head == 2
    assert TrainConfig(arch="llama", d_model=12, n_head=3).n_kv_head == 3
    assert TrainConfig().n_kv_head is None and TrainConfig().arch == "gpt2"
