"""The induction transformer: its data, training, safetensors round trip as a bridge, and the circuit
ACDC and EAP-IG find in the model shipped in data/induction (previous-token head -> induction head's key).

Head roles are read here from the attention patterns directly, not through the module's ``head_scores``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from safetensors.torch import load_file
from hypothesis import strategies as st

pytest.importorskip("transformer_lens.model_bridge")
import circuits  # noqa: E402
from circuits import Edge  # noqa: E402
from circuits.metrics import logit_diff  # noqa: E402
from hooked_bimt.zoo.induction import (  # noqa: E402
    BOS, InductionSetup, head_scores, induction_tokens, load_induction, prompts, save_induction, train_induction,
)

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "induction"
TINY = InductionSetup(d_vocab=12, seq_len=10, min_half=3, max_half=5, d_model=16, d_mlp=8, steps=3, batch=4)


@settings(max_examples=30, deadline=None)
@given(st.integers(4, 10), st.integers(1, 6), st.integers(0, 2**31))
def test_clean_repeats_and_corrupted_reverses_the_first_copy(half, n, seed):
    setup = InductionSetup()
    clean, corrupted = induction_tokens(n, setup, half, torch.Generator().manual_seed(seed))
    assert clean.shape == corrupted.shape == (n, setup.seq_len + 1)
    assert (clean[:, 0] == BOS).all() and (clean[:, 1:] != BOS).all()
    first, second = clean[:, -2 * half : -half], clean[:, -half:]
    assert torch.equal(first, second)
    assert torch.equal(corrupted[:, -2 * half : -half], first.flip(1))
    assert torch.equal(corrupted[:, : -2 * half], clean[:, : -2 * half]) and torch.equal(corrupted[:, -half:], second)
    for row in clean[:, 1 : 1 + setup.seq_len - half]:  # filler and first copy: distinct tokens
        assert len(set(row.tolist())) == len(row)


@settings(max_examples=30, deadline=None)
@given(st.integers(4, 10), st.integers(0, 2**31))
def test_prompt_labels_are_what_induction_predicts_in_each_run(half, seed):
    """The label of a prompt is the token that followed the earlier occurrence of its last token."""
    setup = InductionSetup()
    b = prompts(5, setup, half, seed)
    for tokens, labels in ((b["clean"], b["clean_labels"]), (b["corrupted"], b["corrupt_labels"])):
        for row, label in zip(tokens.tolist(), labels.tolist()):
            earlier = row.index(row[-1])  # tokens are distinct before the second copy
            assert earlier < len(row) - 1 and row[earlier + 1] == label
    assert (b["clean_labels"] != b["corrupt_labels"]).all()


@pytest.mark.parametrize("kwargs, match", [({"d_model": 30, "n_head": 4}, "divisible"), ({"max_half": 13}, "max_half"),
                                           ({"d_vocab": 20}, "d_vocab"), ({"steps": 0}, "steps"), ({"lr": -1.0}, "lr")])
def test_bad_setups_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InductionSetup(**kwargs)


def test_training_is_seeded_and_the_saved_model_loads_back_as_the_same_bridge(tmp_path):
    a, _ = train_induction(TINY)
    b, record = train_induction(TINY)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    save_induction(a, TINY, tmp_path / "m", record=record)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_induction(a, TINY, tmp_path / "m")
    bridge, setup = load_induction(tmp_path / "m")
    assert setup == TINY and not bridge.training
    saved = load_file(tmp_path / "m" / "model.safetensors")
    assert saved.keys() == a.state_dict().keys()
    for name, x in a.state_dict().items():  # every weight saved bit-exactly
        assert torch.equal(saved[name], x), name
    tokens, _ = induction_tokens(3, TINY, 4, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the bridge computes what the trained model computes (float64 both)
        assert torch.allclose(bridge(tokens), a.double()(tokens).logits, atol=1e-6)


def test_a_damaged_save_is_a_clear_error(tmp_path):
    model, _ = train_induction(TINY)
    save_induction(model, TINY, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_induction(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_induction(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- the shipped model
@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("data/induction not present (demos/induction_circuit.py --train writes it)")
    bridge, setup = load_induction(SHIPPED)
    return bridge, setup, prompts(16, setup, 6, seed=1)


def pattern_heads(bridge, tokens, half: int) -> tuple[int, int]:
    """(previous-token head of layer 0, induction head of layer 1) from the attention patterns."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    att = [cache[f"blocks.{l}.attn.hook_pattern"] for l in range(2)]  # (batch, head, q, k)
    T = tokens.shape[1]
    prev = torch.stack([att[0][:, :, t, t - 1] for t in range(1, T)], -1).mean((0, 2))
    ind = torch.stack([att[1][:, :, t, t - half + 1] for t in range(T - half, T)], -1).mean((0, 2))
    assert prev.max() > 0.5 and ind.max() > 0.5, (prev, ind)  # the two roles exist, sharply
    return int(prev.argmax()), int(ind.argmax())


@pytest.mark.slow
def test_acdc_and_eap_ig_find_the_previous_token_head_feeding_the_induction_key(shipped):
    bridge, setup, batch = shipped
    full = torch.cat([batch["clean"], batch["clean_labels"][:, None]], 1)
    prev, ind = pattern_heads(bridge, full, 6)
    scores = head_scores(bridge, full, 6)  # the module's scorer names the same heads
    assert (int(scores["previous_token"][0].argmax()), int(scores["induction"][1].argmax())) == (prev, ind)
    known = Edge("blocks.0.attn.hook_result", prev, "blocks.1.attn.hook_k_input", ind)
    metric = logit_diff(batch["clean_labels"], batch["corrupt_labels"])
    found = circuits.acdc(bridge, batch["clean"], batch["corrupted"], threshold=0.05, metric=metric)
    assert known in found.edges
    assert Edge("blocks.1.attn.hook_result", ind, "blocks.1.hook_out", 0) in found.edges  # it writes the answer
    scores = circuits.eap(bridge, batch["clean"], batch["corrupted"], metric, steps=8)
    ranked = sorted(scores, key=lambda e: -abs(scores[e]))
    assert ranked.index(known) < 20, ranked[:20]  # top fifth of the 110 edges
    into_key = [e for e in ranked if e.receiver == "blocks.1.attn.hook_k_input" and e.receiver_index == ind]
    assert into_key[0] == known  # what feeds the induction head's key: the previous-token head first
