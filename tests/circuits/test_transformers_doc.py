"""docs/transformers.md, issue 24: the pretrained model + tokenizer example runs as written (offline: "gpt2"
becomes a local folder holding a 2-layer GPT-2 and a word-level tokenizer built with ``tokenizers``), the
equal-token-length advice holds, migration through ``boot_transformers`` + ``enable_compatibility_mode()``
finds the same circuit, and the threshold-scale numbers are the shipped induction model's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import circuits
from circuits import Circuit, metrics

pytest.importorskip("transformer_lens.model_bridge")
pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "transformers.md").read_text()
SECTION = PAGE.split("## A pretrained model and its tokenizer", 1)[1].split("\n## ", 1)[0]
EXAMPLE = re.search(r"```python\n(.*?)```", SECTION, flags=re.S).group(1)
BOS = "<|endoftext|>"  # GPT-2's: BOS, EOS and (as TransformerLens sets it) the pad token


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    """What ``save_pretrained`` writes for a 2-layer GPT-2 and a word-level tokenizer knowing the example's words."""
    words = sorted({w for text in re.findall(r'"([^"]*)"', EXAMPLE) for w in re.findall(r"\w+|[^\w\s]", text)})
    vocab = {BOS: 0, **{w: i + 1 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=BOS))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=BOS)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=16, vocab_size=len(vocab), n_positions=32, bos_token_id=0,
                     eos_token_id=0, initializer_range=0.3)
    path = tmp_path_factory.mktemp("gpt2-local")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a download attempt fails instead of reaching for the network


def _boot(folder: str, compatibility: bool = False):
    bridge = TransformerBridge.boot_transformers(folder, device="cpu", dtype=torch.float64)
    if compatibility:
        bridge.enable_compatibility_mode(disable_warnings=True)
    return bridge


def test_the_pretrained_example_runs_as_written(folder, offline):
    assert 'boot_transformers("gpt2", device="cpu")' in EXAMPLE
    namespace: dict = {}
    exec(compile(EXAMPLE.replace('"gpt2"', repr(folder)), "docs/transformers.md", "exec"), namespace)
    circuit, tok = namespace["circuit"], namespace["tok"]
    assert isinstance(circuit, Circuit) and circuit.n_total_edges == 110
    assert namespace["clean_ids"].shape == (2, 15) and bool((namespace["clean_ids"][:, 0] == tok.bos_token_id).all())
    assert len(set(namespace["answers"].tolist()) | set(namespace["wrong"].tolist())) == 4  # no BOS among them
    assert tok.encode(" Mary")[0] == tok.bos_token_id  # why the page takes the answers from to_single_token


def test_unequal_prompts_raise_without_padding_and_to_tokens_would_pad_them(folder, offline):
    bridge = _boot(folder)
    tok = bridge.tokenizer
    with pytest.raises(ValueError, match="padding=True"):
        tok(["When Mary went to the store", "When Mary went"], return_tensors="pt")
    with pytest.raises(AssertionError, match="not a single token"):
        bridge.to_single_token(" Mary John")
    padded = bridge.to_tokens(["When Mary went to the store", "When Mary went"])
    assert padded[1, -1] == tok.pad_token_id == tok.bos_token_id  # the pad token is the BOS token ...
    same = bridge.to_tokens(["When Mary went to the store", "When John went to the park"])
    for name, batch in (("clean", padded), ("corrupted", padded.flip(0))):  # ... so ragged runs of it are refused
        args = (same, padded.flip(0)) if name == "corrupted" else (padded, same)
        with pytest.raises(ValueError, match=f"{name} looks padded: its rows end with 0 to 3 copies of token 0"):
            circuits.acdc(bridge, *args, threshold=0.01)
    left = same.clone()
    left[1, 1] = tok.bos_token_id  # a second leading BOS on one row only: what left padding makes
    with pytest.raises(ValueError, match="clean looks padded: its rows start with 1 to 2 copies of token 0"):
        circuits.eap(bridge, left, same.flip(0))
    circuits.acdc(bridge, same, same.flip(0), threshold=0.01)  # one BOS on every row, no padding: accepted


def test_compatibility_mode_on_a_booted_bridge_finds_the_same_circuit(folder, offline):
    """The migration the page gives (``boot_transformers``, then ``enable_compatibility_mode()``): the same ACDC
    circuit with and without the HookedTransformer-style weight processing."""
    plain = _boot(folder)
    tok = plain.tokenizer
    clean = tok(["When Mary and John went to the store , John gave a drink to"] * 2, return_tensors="pt").input_ids
    corrupted = tok(["When Mary and John went to the store , Mary gave a drink to",
                     "When Tom and James went to the park , Tom gave a ball to"], return_tensors="pt").input_ids
    found = [circuits.acdc(b, clean, corrupted, threshold=0.002) for b in (plain, _boot(folder, compatibility=True))]
    assert 0 < found[0].n_edges < found[0].n_total_edges
    assert found[1].edges == found[0].edges
    for edge, effect in found[0].effects.items():
        assert found[1].effects[edge] == pytest.approx(effect, rel=1e-4, abs=1e-9)


def test_the_threshold_scale_numbers_are_the_shipped_induction_models():
    from hooked_bimt.zoo.induction import SHIPPED, load_induction, prompts

    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("data/induction not present")
    bridge, setup = load_induction()
    batch = prompts(8, setup, half=6, seed=1)
    graph = circuits.graph_of(bridge)
    full, empty = (circuits.run_circuit(bridge, c, batch["clean"], batch["corrupted"])
                   for c in (Circuit.full(graph), Circuit.empty(graph)))
    ld = metrics.logit_diff(batch["clean_labels"], batch["corrupt_labels"])
    a, b = float(ld(full, full)), float(ld(empty, full))
    k = float(metrics.kl()(empty, full))
    text = " ".join(PAGE.split())
    assert f"that span is {b - a:.1f} for `logit_diff` (from {a:.2f} to +{b:.2f}, in logits)" in text
    assert f"and {k:.1f} for KL (from 0 to {k:.2f}, in nats)" in text
    assert f"threshold 0.5 on the logit difference is {round(100 * 0.5 / (b - a))}% of its span" in text


@pytest.mark.parametrize("needed", [
    "## A pretrained model and its tokenizer", "## Prompts of equal length", "## Threshold scale: `logit_diff` vs KL",
    "## What is checked before any work", "**token ids**", "**context length**", "**padding**",
    "## Coming from HookedTransformer", "TransformerLens 4 has no `HookedTransformer`",
    "TransformerBridge.boot_transformers", "enable_compatibility_mode()",
])
def test_the_page_covers_what_a_transformer_user_asks(needed):
    assert needed in PAGE
