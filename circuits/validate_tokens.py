"""Checks on token inputs, before any forward pass: the device, the vocabulary, the context length, padding.

A TransformerLens model (a 4.x ``TransformerBridge``, or any hooked model with a ``cfg`` that has ``d_vocab`` and
``n_ctx``) looks its token ids up in an embedding of ``d_vocab`` rows and its positions in a context of ``n_ctx``.
Out of range, PyTorch answers with a raw ``IndexError`` (GPT-2's learned positions) or, worse, nothing at all
(rotary positions run past the trained context and give meaningless logits). Each check here names the problem.

Padding: a pad token is the tokenizer's ``pad_token_id`` or, with ``tokenizer=None``, the Hugging Face config's
``pad_token_id`` (when it is not also the BOS/EOS token, which GPT-2-style models reuse as pad). A bridge with
neither has no pad token: its token ids carry no padding mark, and equal-length prompts are the user's job.
A tokenizer whose pad token *is* its BOS/EOS token (``tok.pad_token = tok.eos_token``, the usual GPT-2 set-up) marks
padding only by position: a batch whose rows start or end with runs of that token of *different* lengths is what
``tokenizer(..., padding=True)`` makes, and is refused (equal runs, e.g. a BOS on every row, are prompts).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor


def check_not_meta(**batches: Any) -> None:
    """A tensor on the ``meta`` device has a shape but no values: nothing can run on it."""
    for name, x in batches.items():
        if isinstance(x, Tensor) and x.device.type == "meta":
            raise ValueError(f"{name} is on the meta device (a shape without values, e.g. from torch.device('meta') "
                             "or an empty init); create it with real values, e.g. tokenizer(...).input_ids")


def _cfg_int(model: Any, name: str) -> Optional[int]:
    value = getattr(getattr(model, "cfg", None), name, None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_token_ids(model: Any, **batches: Any) -> None:
    """Integer inputs of a model with ``cfg.d_vocab`` / ``cfg.n_ctx``: ids in ``0 .. d_vocab - 1``, at most
    ``n_ctx`` positions (``(batch, pos)``)."""
    vocab, n_ctx = _cfg_int(model, "d_vocab"), _cfg_int(model, "n_ctx")
    for name, x in batches.items():
        if not isinstance(x, Tensor) or x.is_floating_point() or x.is_complex() or x.numel() == 0:
            continue
        if vocab is not None:
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= vocab:
                bad = x[(x < 0) | (x >= vocab)].unique()[:5].tolist()
                raise ValueError(f"{name} holds token ids {bad} outside the vocabulary 0..{vocab - 1} (cfg.d_vocab="
                                 f"{vocab}); tokenize with the model's own tokenizer")
        if n_ctx is not None and x.dim() >= 2 and x.shape[-1] > n_ctx:
            raise ValueError(f"{name} has {x.shape[-1]} positions but the model's context is {n_ctx} (cfg.n_ctx: "
                             "GPT-2's n_positions, Llama's max_position_embeddings); positions past it were never "
                             f"trained. Shorten the prompts to at most {n_ctx} tokens")


def pad_token_id(model: Any) -> Optional[int]:
    """The model's pad token (module docstring), or None when it has none or it doubles as BOS/EOS."""
    for source in (getattr(model, "tokenizer", None), getattr(getattr(model, "original_model", None), "config", None)):
        pad = getattr(source, "pad_token_id", None) if source is not None else None
        if isinstance(pad, int) and not isinstance(pad, bool):
            specials = {getattr(source, "bos_token_id", None), getattr(source, "eos_token_id", None)}
            return None if pad in specials else int(pad)
    return None


def shared_pad_token_id(model: Any) -> Optional[int]:
    """The tokenizer's pad token when it doubles as its BOS/EOS token (module docstring), else None."""
    tok = getattr(model, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    if not isinstance(pad, int) or isinstance(pad, bool):
        return None
    return pad if pad in {getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)} else None


def _run_lengths(x: Tensor, token: int) -> tuple[list[int], list[int]]:
    """Per row of ``(batch, pos)`` ids: how many positions at its start, and at its end, hold ``token``."""
    hit = (x == token).to(torch.int64)
    lead = torch.cumprod(hit, dim=-1).sum(-1)
    trail = torch.cumprod(hit.flip(-1), dim=-1).sum(-1)
    return lead.flatten().tolist(), trail.flatten().tolist()


def _check_ragged_runs(pad: int, name: str, x: Tensor) -> None:
    if x.dim() != 2 or x.shape[0] < 2:
        return
    lead, trail = _run_lengths(x, pad)
    for side, runs in (("end", trail), ("start", lead)):
        if len(set(runs)) > 1:
            raise ValueError(
                f"{name} looks padded: its rows {side} with {min(runs)} to {max(runs)} copies of token {pad}, the "
                f"tokenizer's pad token (also its BOS/EOS token), so the prompts had different token lengths; patching "
                "would mix padded and real positions. Use prompts of equal token length, without padding= "
                "(docs/transformers.md, 'Prompts of equal length')")


def check_no_padding(model: Any, **batches: Any) -> None:
    """Refuse a batch holding the model's pad token (patching would mix padded and real positions), or, where the
    pad token is also BOS/EOS, rows that start or end with runs of it of different lengths (module docstring)."""
    pad = pad_token_id(model)
    if pad is None:
        shared = shared_pad_token_id(model)
        for name, x in batches.items():
            if shared is not None and isinstance(x, Tensor) and not x.is_floating_point() and x.numel():
                _check_ragged_runs(shared, name, x)
        return
    for name, x in batches.items():
        if isinstance(x, Tensor) and not x.is_floating_point() and bool((x == pad).any()):
            raise ValueError(f"{name} contains the pad token {pad}: padded batches are not supported (patching "
                             "would mix padded and real positions); use prompts of equal token length "
                             "(docs/transformers.md, 'Prompts of equal length')")
