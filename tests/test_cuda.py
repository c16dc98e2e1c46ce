"""GPU paths: what a user runs on CUDA gives what it gives on the CPU (skipped without a GPU).

Every test builds its model and inputs on the CPU, runs there, moves both to ``DEVICE`` and runs again:
float64 circuits must be the same edge sets with effects equal to rounding, scores and logits equal to
rounding, and the results must live on the device the model lives on. Training on CUDA is checked
against what the CPU trainer guarantees (finite, learning, on the device, CUDA's own peak meter).

``HOOKED_BIMT_TEST_DEVICE=cpu`` runs the module on the CPU (a check of the tests themselves, not of CUDA).
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

import circuits
from circuits import Circuit, metrics

DEVICE = os.environ.get("HOOKED_BIMT_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="needs a CUDA device")


def on(model, device=DEVICE):
    return copy.deepcopy(model).to(device)


def same_circuit(a: Circuit, b: Circuit, tol: float = 1e-9, rel: float = 1e-9) -> None:
    assert a.edges == b.edges
    assert list(a.effects) == list(b.effects)
    for e, v in a.effects.items():
        assert math.isclose(b.effects[e], v, rel_tol=rel, abs_tol=tol), (e, v, b.effects[e])


def assert_close_tree(a, b, path="data") -> None:
    """Nested dicts/lists equal, floats to 1e-9 relative (a GPU's float64 rounding)."""
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_close_tree(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, path


def mlp(seed: int = 0, widths=(6, 5, 4, 3)):
    from hooked_bimt.model import HookedMLP

    torch.manual_seed(seed)
    model = HookedMLP(widths).double()
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(2.0)
    g = torch.Generator().manual_seed(100 + seed)
    clean = torch.randn(8, widths[0], generator=g, dtype=torch.float64)
    corrupted = torch.randn(8, widths[0], generator=g, dtype=torch.float64)
    return model, clean, corrupted


@pytest.mark.parametrize("engine", ["reference", "fast", "fast-speculative"])
@pytest.mark.parametrize("threshold", [0.0, 1e-3])
def test_mlp_acdc_on_the_device_equals_the_cpu(engine, threshold):
    """``fast``: the compiled loop (on CPU copies of the device's data); ``fast-speculative``: its batched
    speculate-and-verify path, on the device (guesses from the compiled model loop on CPU copies)."""
    from circuits.acdc.options import MLPOptions, Options

    options = Options(mlp=MLPOptions(compiled=engine != "fast-speculative"))
    engine = "fast" if engine == "fast-speculative" else engine
    model, clean, corrupted = mlp(widths=(24, 6, 4, 3))
    cpu = circuits.acdc(model, clean, corrupted, threshold=threshold, engine=engine, options=options)
    dev = circuits.acdc(on(model), clean.to(DEVICE), corrupted.to(DEVICE), threshold=threshold, engine=engine,
                        options=options)
    assert dev.settings["path"] == cpu.settings["path"]
    same_circuit(cpu, dev)


def test_float32_mlp_engines_agree_on_the_device():
    model, clean, corrupted = mlp(3, widths=(20, 16, 12, 5))
    model = on(model.float())
    clean, corrupted = clean.float().to(DEVICE), corrupted.float().to(DEVICE)
    ref = circuits.acdc(model, clean, corrupted, threshold=1e-4, engine="reference")
    fast = circuits.acdc(model, clean, corrupted, threshold=1e-4, engine="fast")
    assert fast.settings["engine_used"] == "fast"
    same_circuit(ref, fast, tol=1e-10)


def test_run_circuit_eap_and_evaluate_on_the_device_equal_the_cpu():
    model, clean, corrupted = mlp(1)
    circuit = circuits.acdc(model, clean, corrupted, threshold=1e-3)
    dev_model, c, k = on(model), clean.to(DEVICE), corrupted.to(DEVICE)
    logits = circuits.run_circuit(dev_model, circuit, c, k)  # a circuit found on the CPU runs on the GPU copy
    assert logits.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(logits.cpu(), circuits.run_circuit(model, circuit, clean, corrupted), rtol=1e-10, atol=1e-12)
    for steps in (None, 4):
        cpu_scores = circuits.eap(model, clean, corrupted, steps=steps)
        dev_scores = circuits.eap(dev_model, c, k, steps=steps)
        assert list(cpu_scores) == list(dev_scores)
        for e, v in cpu_scores.items():
            assert math.isclose(dev_scores[e], v, rel_tol=1e-9, abs_tol=1e-12)
    labels = torch.arange(8) % 3
    r_cpu = circuits.evaluate(model, circuit, clean, corrupted, clean_labels=labels, corrupt_labels=(labels + 1) % 3)
    r_dev = circuits.evaluate(dev_model, circuit, c, k, clean_labels=labels, corrupt_labels=(labels + 1) % 3)
    for key, v in r_cpu.items():
        if isinstance(v, float):
            assert math.isclose(r_dev[key], v, rel_tol=1e-9, abs_tol=1e-12), key


def test_the_viewer_draws_a_model_on_the_device():
    model, clean, corrupted = mlp(2)
    circuit = circuits.acdc(model, clean, corrupted, threshold=1e-3)
    page_cpu = circuits.viz.circuit_graph(model, circuit)
    page_dev = circuits.viz.circuit_graph(on(model), circuit)
    assert_close_tree(page_dev.data, page_cpu.data)  # the page's data; the page's element id is random


# ------------------------------------------------------------------------------------------ bridges
def gpt2_bridge(device: str, layers: int = 2):
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_head=4, n_embd=16, vocab_size=20, n_positions=16, initializer_range=0.3)
    hf = GPT2LMHeadModel(cfg).double().eval()
    return build_bridge_from_module(hf.to(device), "GPT2LMHeadModel", hf_config=cfg, tokenizer=None, device=device)


def llama_bridge(device: str):
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=16,
                      intermediate_size=32, vocab_size=20, max_position_embeddings=16, initializer_range=0.3)
    hf = LlamaForCausalLM(cfg).double().eval()
    return build_bridge_from_module(hf.to(device), "LlamaForCausalLM", hf_config=cfg, tokenizer=None, device=device)


def neox_bridge(device: str):
    """GPT-NeoX (Pythia's family): parallel attention and MLP, rotary on half of each head; the delta path."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=16, intermediate_size=32, vocab_size=20,
                        max_position_embeddings=16, initializer_range=0.3, rotary_pct=0.5, use_parallel_residual=True)
    hf = GPTNeoXForCausalLM(cfg).double().eval()
    return build_bridge_from_module(hf.to(device), "GPTNeoXForCausalLM", hf_config=cfg, tokenizer=None, device=device)


def olmo_bridge(device: str):
    """OLMo: stacked forwards copied at the input (its bridge builds an attention mask before the blocks) when the
    delta path is switched off, as the test does."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(0)
    cfg = OlmoConfig(num_hidden_layers=2, num_attention_heads=4, hidden_size=16, intermediate_size=32, vocab_size=20,
                     max_position_embeddings=16, initializer_range=0.3)
    hf = OlmoForCausalLM(cfg).double().eval()
    return build_bridge_from_module(hf.to(device), "OlmoForCausalLM", hf_config=cfg, tokenizer=None, device=device)


def tokens(batch: int = 4, seq: int = 5):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 20, (batch, seq), generator=g), torch.randint(0, 20, (batch, seq), generator=g)


# HF's Llama computes its rotary cos/sin tables in float32 whatever the model's dtype, and the CPU's and the
# GPU's float32 cos/sin differ in the last bits: the two Llama models' effects differ by up to ~1e-8 (seen on
# an H200: 0.0182599973 vs 0.0182600043; 6.13011e-05 vs 6.12987e-05), so CPU vs GPU is compared to 1e-5
# relative or 1e-7 absolute there, the edge sets exactly; the two engines on one device to 1e-9.
@pytest.mark.parametrize("make, rel, stacked", [(gpt2_bridge, 1e-9, False), (llama_bridge, 1e-5, False),
                                                (neox_bridge, 1e-9, False), (olmo_bridge, 1e-5, True)],
                         ids=["gpt2", "llama_gqa", "neox_parallel", "olmo_stacked_at_input"])
def test_bridge_acdc_on_the_device_equals_the_cpu(make, rel, stacked):
    pytest.importorskip("transformer_lens.model_bridge")
    from circuits.acdc.options import AttentionOptions, Options

    options = Options(attention=AttentionOptions(delta=not stacked))
    clean, corrupted = tokens()
    cpu_bridge, dev_bridge = make("cpu"), make(DEVICE)
    cpu = circuits.acdc(cpu_bridge, clean, corrupted, threshold=1e-3, engine="fast", options=options)
    ref_dev = circuits.acdc(dev_bridge, clean.to(DEVICE), corrupted.to(DEVICE), threshold=1e-3, engine="reference")
    fast_dev = circuits.acdc(dev_bridge, clean.to(DEVICE), corrupted.to(DEVICE), threshold=1e-3, engine="fast",
                             options=options)
    assert fast_dev.settings["path"] == ("attention.stacked" if stacked else "attention.delta")
    same_circuit(ref_dev, fast_dev)
    same_circuit(cpu, fast_dev, tol=1e-9 if rel < 1e-6 else 1e-7, rel=rel)
    full = circuits.run_circuit(dev_bridge, Circuit.full(circuits.graph_of(dev_bridge)), clean.to(DEVICE),
                                corrupted.to(DEVICE))
    torch.testing.assert_close(full, dev_bridge(clean.to(DEVICE)), rtol=1e-10, atol=1e-10)


def test_bridge_eap_ig_on_the_device_equals_the_cpu():
    pytest.importorskip("transformer_lens.model_bridge")
    clean, corrupted = tokens()
    metric = metrics.logit_diff(torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8]))
    cpu = circuits.eap(gpt2_bridge("cpu"), clean, corrupted, metric, steps=3)
    dev = circuits.eap(gpt2_bridge(DEVICE), clean.to(DEVICE), corrupted.to(DEVICE), metric, steps=3)
    assert list(cpu) == list(dev)
    for e, v in cpu.items():
        assert math.isclose(dev[e], v, rel_tol=1e-9, abs_tol=1e-12), e


# ------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("regime", ["bimt", "bimt_original"])
def test_training_on_the_device_learns_and_meters_memory(regime):
    from hooked_bimt.data import load_mnist
    from hooked_bimt import TrainConfig, train
    from hooked_bimt.memory import TrainingMemoryMeter

    data = load_mnist()
    config = TrainConfig(steps=120, swap_every=50, eval_every=60, train_subset=2000, test_subset=500,
                         lambda_=1e-3)
    result = train(regime, config, seed=0, device=DEVICE, data=data, progress=False, hook=TrainingMemoryMeter())
    model = result.model
    assert all(p.device.type == torch.device(DEVICE).type for p in model.parameters())
    assert result.metrics["swaps"] > 0
    accs = [h["test_accuracy"] for h in result.history]
    assert accs and accs[-1] > 0.5  # 120 steps of MNIST: far above chance (0.1)
    assert result.metrics["peak_memory_bytes"] > sum(p.numel() * p.element_size() for p in model.parameters())
    # the circuit engines take the trained model where it is
    _, test = data
    clean = test.flat()[test.labels == 8][:20].to(DEVICE)
    corrupted = test.flat()[test.labels == 3][:20].to(DEVICE)
    fast = circuits.acdc(model, clean, corrupted, threshold=1e-3, engine="fast")
    ref = circuits.acdc(model, clean, corrupted, threshold=1e-3, engine="reference")
    same_circuit(ref, fast, tol=1e-10)


def test_the_cuda_peak_memory_ignores_what_else_is_on_the_device():
    """``peak_memory_bytes`` is the training's own (the CPU meter's quantity), not the device's total."""
    from hooked_bimt.data import load_mnist
    from hooked_bimt import TrainConfig, train
    from hooked_bimt.memory import TrainingMemoryMeter

    data = load_mnist()
    config = TrainConfig(steps=60, swap_every=50, eval_every=60, train_subset=1000, test_subset=200)
    alone = train("bimt", config, seed=0, device=DEVICE, data=data, progress=False, hook=TrainingMemoryMeter()).metrics["peak_memory_bytes"]
    other = torch.zeros(16 * 2**20, device=DEVICE)  # 64 MiB of someone else's tensors on the device
    beside = train("bimt", config, seed=0, device=DEVICE, data=data, progress=False, hook=TrainingMemoryMeter()).metrics["peak_memory_bytes"]
    del other
    assert abs(beside - alone) <= 64 * 1024, (alone, beside)
    params = (784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10) * 4
    assert 4 * params <= alone < 8 * 2**20  # parameters + gradients + AdamW's two moments, far below 64 MiB
