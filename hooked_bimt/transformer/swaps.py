"""SPEC 8's function-preserving swaps on a Hugging Face ``GPT2LMHeadModel``, optimizer state moved along.

HF's Conv1D stores (in x out), so "rows of a map" (its outputs) are Conv1D *columns* (dim 1) and its inputs
are Conv1D rows (dim 0); ``nn.Embedding`` is (vocab x d_model), ``lm_head`` (vocab x d_model).

- ``swap_residual(i, j)``: residual dimension i <-> j in every map that writes the stream (embedding and
  positional embedding columns, attention and MLP output maps and their biases), every map that reads it (q/k/v
  and MLP input rows, unembedding columns) and every LayerNorm's weight and bias. LayerNorm's mean and variance
  are sums over the dimensions, so the whole network is permutation-equivariant in the stream.
- ``swap_mlp_neurons(layer, i, j)``: the MLP input map's outputs (and bias), the output map's inputs.
- ``swap_heads(layer, h, g)``: the d_head-blocks of heads h and g in q, k and v (and their biases) and in the
  attention output map's inputs; attention is computed per head, so the heads simply trade places.

A Llama-style module (``llama``: RMSNorm, gated MLP, grouped-query attention) is dispatched to its own moves; under
GQA ``swap_heads`` takes two heads of one key/value group and ``swap_kv_groups`` moves whole groups.

Every optimizer state tensor shaped like a moved parameter (AdamW's ``exp_avg``, ``exp_avg_sq``) is permuted
identically, so the next optimizer step is the swapped image of the step without the swap.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from hooked_bimt.transformer import llama
from hooked_bimt.transformer.geometry import dims


def _index(v: Any, n: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= int(v) < n:
        raise ValueError(f"{name} must be an integer in 0..{n - 1}, got {v!r}")
    return int(v)


def exchange(moves: Iterable[tuple[Tensor, int, Tensor, Tensor]], optimizer: Optional[torch.optim.Optimizer]) -> None:
    """For each (param, dim, a, b): entries ``a`` and ``b`` (index tensors of equal length) trade places along
    ``dim`` in the parameter and in every optimizer state tensor of the same shape."""
    with torch.no_grad():
        for param, dim, a, b in moves:
            tensors = [param]
            if optimizer is not None:
                state = optimizer.state.get(param, {}).values()
                tensors += [v for v in state if isinstance(v, Tensor) and v.shape == param.shape]
            idx, rev = torch.cat([a, b]).to(param.device), torch.cat([b, a]).to(param.device)
            for t in tensors:
                t.index_copy_(dim, idx, t.index_select(dim, rev))


def residual_moves(module: Any, a: Tensor, b: Tensor) -> list[tuple[Tensor, int, Tensor, Tensor]]:
    """Every (parameter, dim) indexed by the residual stream, with the index pair to exchange."""
    tr = module.transformer
    moves = [(tr.wte.weight, 1), (tr.wpe.weight, 1), (module.lm_head.weight, 1), (tr.ln_f.weight, 0), (tr.ln_f.bias, 0)]
    for block in tr.h:
        for ln in (block.ln_1, block.ln_2):
            moves += [(ln.weight, 0), (ln.bias, 0)]
        for lin_in in (block.attn.c_attn, block.mlp.c_fc):
            moves.append((lin_in.weight, 0))
        for lin_out in (block.attn.c_proj, block.mlp.c_proj):
            moves += [(lin_out.weight, 1), (lin_out.bias, 0)]
    return [(p, dim, a, b) for p, dim in moves if p is not None]


def swap_residual(module: Any, i: int, j: int, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Swap residual-stream dimensions ``i`` and ``j`` everywhere (module docstring); the function is unchanged."""
    d = dims(module)
    i, j = _index(i, d["d_model"], "i"), _index(j, d["d_model"], "j")
    if i != j:
        moves = llama.residual_moves if llama.is_llama(module) else residual_moves
        exchange(moves(module, torch.tensor([i]), torch.tensor([j])), optimizer)


def swap_mlp_neurons(module: Any, layer: int, i: int, j: int, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Swap hidden neurons ``i`` and ``j`` of block ``layer``'s MLP."""
    d = dims(module)
    layer = _index(layer, d["n_layer"], "layer")
    i, j = _index(i, d["d_mlp"], "i"), _index(j, d["d_mlp"], "j")
    if i == j:
        return
    a, b = torch.tensor([i]), torch.tensor([j])
    if llama.is_llama(module):
        exchange(llama.mlp_moves(module, layer, a, b), optimizer)
        return
    mlp = module.transformer.h[layer].mlp
    exchange([(mlp.c_fc.weight, 1, a, b), (mlp.c_fc.bias, 0, a, b), (mlp.c_proj.weight, 0, a, b)], optimizer)


def head_slots(d: dict[str, int], h: int) -> tuple[Tensor, Tensor]:
    """Head h's columns of the fused q/k/v map (three blocks) and its rows of the output map."""
    block = torch.arange(h * d["d_head"], (h + 1) * d["d_head"])
    return torch.cat([block + f * d["d_model"] for f in range(3)]), block


def swap_heads(module: Any, layer: int, h: int, g: int, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Swap heads ``h`` and ``g`` of block ``layer`` (q/k/v blocks and biases, output-map input block)."""
    d = dims(module)
    layer = _index(layer, d["n_layer"], "layer")
    h, g = _index(h, d["n_head"], "h"), _index(g, d["n_head"], "g")
    if h == g:
        return
    if llama.is_llama(module):
        exchange(llama.head_moves(module, layer, h, g), optimizer)
        return
    attn = module.transformer.h[layer].attn
    (qkv_h, out_h), (qkv_g, out_g) = head_slots(d, h), head_slots(d, g)
    exchange([(attn.c_attn.weight, 1, qkv_h, qkv_g), (attn.c_attn.bias, 0, qkv_h, qkv_g),
              (attn.c_proj.weight, 0, out_h, out_g)], optimizer)


def swap_kv_groups(module: Any, layer: int, a: int, b: int, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Llama with grouped-query attention: swap key/value groups ``a`` and ``b`` of block ``layer`` together with
    their query heads (k/v row blocks and biases, the groups' q row blocks and o column blocks, in order)."""
    if not llama.is_llama(module):
        raise TypeError(f"swap_kv_groups is for Llama-style modules (grouped-query attention), got "
                        f"{type(module).__name__}: use swap_heads")
    d = dims(module)
    layer = _index(layer, d["n_layer"], "layer")
    a, b = _index(a, d["n_kv"], "a"), _index(b, d["n_kv"], "b")
    if a != b:
        exchange(llama.kv_group_moves(module, layer, a, b), optimizer)
