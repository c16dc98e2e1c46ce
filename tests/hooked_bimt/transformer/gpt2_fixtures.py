"""Small float64 GPT-2 modules with non-trivial weights and AdamW moments, for exact comparisons."""

from __future__ import annotations

import copy

import pytest
import torch


def tiny_gpt2(seed: int = 0, d_model: int = 8, n_head: int = 2, d_mlp: int = 12, n_layer: int = 2, vocab: int = 11):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab, n_positions=8, n_embd=d_model, n_layer=n_layer, n_head=n_head, n_inner=d_mlp,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).double().eval()
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0 / 1: make every parameter distinct
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def adam_step(model, opt, tokens) -> None:
    opt.zero_grad()
    logits = model(tokens).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    loss.backward()
    opt.step()


@pytest.fixture(scope="module")
def trained_pair():
    """A tiny GPT-2 after three AdamW steps (moments non-zero), and the optimizer."""
    model = tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        adam_step(model, opt, torch.randint(0, 11, (4, 6), generator=gen))
    return model, opt


def clone(model, opt):
    """An independent copy of ``model`` with an AdamW holding a copy of ``opt``'s state."""
    m2 = copy.deepcopy(model)
    o2 = torch.optim.AdamW(m2.parameters(), lr=1e-2, weight_decay=0.01)
    o2.load_state_dict(copy.deepcopy(opt.state_dict()))
    return m2, o2


def assert_swap_preserves_function_and_next_step(model, opt, swap, step, tokens) -> None:
    """``swap(model, opt)`` (a function-preserving swap that is its own inverse) leaves the logits on ``tokens``
    unchanged to 1e-12, and after one optimizer step ``step(model, opt)`` on each copy, swapping back gives the
    unswapped copy's parameters and AdamW moments to 1e-12 (the moments moved with the weights)."""
    ref, ref_opt = clone(model, opt)
    swapped, sw_opt = clone(model, opt)
    before = ref(tokens).logits
    swap(swapped, sw_opt)
    torch.testing.assert_close(swapped(tokens).logits, before, rtol=0, atol=1e-12)
    step(ref, ref_opt)
    step(swapped, sw_opt)
    swap(swapped, sw_opt)  # its own inverse: back to ref's layout
    for (name, p), q in zip(ref.named_parameters(), swapped.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-12, msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sw_opt.state[q][key], ref_opt.state[p][key], rtol=0, atol=1e-12, msg=name)
