"""SPEC 8 on a Llama-style module (``LlamaForCausalLM``: RMSNorm, gated MLP, rotary positions, grouped-query
attention): its coordinates, penalised maps and swap moves. ``geometry.dims``/``penalised_maps`` and the swaps of
``swaps`` dispatch here for a Llama module, so ``connection_cost``, ``swap_residual``, ``swap_mlp_neurons`` and
``swap_heads`` apply to it unchanged; ``swap_kv_groups`` is new. ``relocate`` visits Llama's own sets (MLP
neurons, key/value groups, heads within a group, the residual stream); ``TrainConfig(arch="llama")`` trains one and
``save``/``load`` round-trip it to a bridge. The pictures (figure, locality, viewer) draw it at these coordinates
(``drawing``: a key/value row below each head row).

Coordinates (SPEC 8 describes GPT-2; this is its reading for Llama, each set on its own line of cell centres):
- the residual stream: ``d_model`` neurons, one set for every layer (RMSNorm weights move with it);
- query outputs (= the output projection's inputs): ``n_head * d_head`` coordinates grouped by head;
- key and value outputs: ``n_kv * d_head`` coordinates each, grouped by key/value head, so group g spans the same
  stretch [g / n_kv, (g + 1) / n_kv] as the query heads that read it;
- MLP hidden neurons: ``d_mlp`` coordinates, shared by the gate and up maps (two maps writing the same neurons);
- the vocabulary.
Maps penalised: W_E; per block q, k, v, o, gate, up, down (biases, where the config has them, at y*); W_U.

Swaps, all function-preserving (RMSNorm divides by the root mean square over the stream, a symmetric function;
rotary acts on every head's dimensions alike, so whole heads can trade places):
- residual i <-> j: W_E and W_U columns, the q/k/v/gate/up input columns, the o/down output rows and biases, every
  RMSNorm weight;
- MLP neurons: gate and up rows (and biases), down columns;
- heads h <-> g of one layer: their q row blocks (and biases) and o column blocks; under GQA only heads that read
  the same key/value group (``swap_kv_groups`` moves two groups, their k/v rows and their query heads, together).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hooked_bimt.transformer.coords import PenalisedMap, line, plain


def is_llama(module: Any) -> bool:
    """A Hugging Face ``LlamaForCausalLM``-style module (config ``model_type`` "llama")."""
    return getattr(getattr(module, "config", None), "model_type", None) == "llama" and hasattr(module, "model")


def llama_dims(module: Any) -> dict[str, int]:
    """``d_vocab``, ``d_model``, ``n_head``, ``n_kv``, ``d_head``, ``d_mlp``, ``n_layer`` (untied embeddings)."""
    inner = module.model
    for sub in (inner, module.lm_head, inner.embed_tokens, *inner.layers):
        plain(sub)
    if module.lm_head.weight is inner.embed_tokens.weight:
        raise ValueError("the embedding and unembedding are tied (tie_word_embeddings=True): SPEC 8 penalises them as "
                         "two maps; build the model with tie_word_embeddings=False")
    attn, cfg = inner.layers[0].self_attn, module.config
    d_vocab, d_model = inner.embed_tokens.weight.shape
    n_head, n_kv = int(cfg.num_attention_heads), int(cfg.num_key_value_heads)
    return {"d_vocab": int(d_vocab), "d_model": int(d_model), "n_head": n_head, "n_kv": n_kv,
            "d_head": attn.q_proj.weight.shape[0] // n_head, "d_mlp": inner.layers[0].mlp.gate_proj.weight.shape[0],
            "n_layer": len(inner.layers)}


def llama_maps(module: Any) -> list[PenalisedMap]:
    """The penalised maps in forward order: W_E; per block q, k, v, o, gate, up, down; W_U (nn.Linear: out x in)."""
    d = llama_dims(module)
    dev = module.model.embed_tokens.weight.device
    vocab, res = line(d["d_vocab"], dev), line(d["d_model"], dev)
    q, kv, mlp = line(d["n_head"] * d["d_head"], dev), line(d["n_kv"] * d["d_head"], dev), line(d["d_mlp"], dev)
    maps = [PenalisedMap("embed", module.model.embed_tokens.weight, True, None, res, vocab)]
    for l, block in enumerate(module.model.layers):
        a, m = block.self_attn, block.mlp
        p = f"blocks.{l}."
        maps += [PenalisedMap(p + "attn.q", a.q_proj.weight, False, a.q_proj.bias, q, res),
                 PenalisedMap(p + "attn.k", a.k_proj.weight, False, a.k_proj.bias, kv, res),
                 PenalisedMap(p + "attn.v", a.v_proj.weight, False, a.v_proj.bias, kv, res),
                 PenalisedMap(p + "attn.out", a.o_proj.weight, False, a.o_proj.bias, res, q),
                 PenalisedMap(p + "mlp.gate", m.gate_proj.weight, False, m.gate_proj.bias, mlp, res),
                 PenalisedMap(p + "mlp.up", m.up_proj.weight, False, m.up_proj.bias, mlp, res),
                 PenalisedMap(p + "mlp.down", m.down_proj.weight, False, m.down_proj.bias, res, mlp)]
    maps.append(PenalisedMap("unembed", module.lm_head.weight, False, module.lm_head.bias, vocab, res))
    return maps


Move = tuple[Tensor, int, Tensor, Tensor]


def _with(moves: list[tuple[Any, int]], a: Tensor, b: Tensor) -> list[Move]:
    return [(p, dim, a, b) for p, dim in moves if p is not None]


def residual_moves(module: Any, a: Tensor, b: Tensor) -> list[Move]:
    """Every (parameter, dim) indexed by the residual stream."""
    inner = module.model
    moves = [(inner.embed_tokens.weight, 1), (module.lm_head.weight, 1), (inner.norm.weight, 0)]
    for block in inner.layers:
        attn, mlp = block.self_attn, block.mlp
        moves += [(block.input_layernorm.weight, 0), (block.post_attention_layernorm.weight, 0)]
        moves += [(lin.weight, 1) for lin in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj)]
        moves += [(m, 0) for lin in (attn.o_proj, mlp.down_proj) for m in (lin.weight, lin.bias)]
    return _with(moves, a, b)


def mlp_moves(module: Any, layer: int, a: Tensor, b: Tensor) -> list[Move]:
    mlp = module.model.layers[layer].mlp
    return _with([(mlp.gate_proj.weight, 0), (mlp.gate_proj.bias, 0), (mlp.up_proj.weight, 0), (mlp.up_proj.bias, 0),
                  (mlp.down_proj.weight, 1)], a, b)


def _block(h: int, d_head: int) -> Tensor:
    return torch.arange(h * d_head, (h + 1) * d_head)


def head_moves(module: Any, layer: int, h: int, g: int) -> list[Move]:
    """Query heads h and g (same key/value group, else ValueError): q rows and bias, o columns."""
    d = llama_dims(module)
    per_group = d["n_head"] // d["n_kv"]
    if h // per_group != g // per_group:
        raise ValueError(f"heads {h} and {g} of layer {layer} read different key/value groups ({h // per_group} and "
                         f"{g // per_group}; {per_group} query heads per group): swapping them alone would change the "
                         "function; swap_kv_groups moves whole groups")
    attn = module.model.layers[layer].self_attn
    a, b = _block(h, d["d_head"]), _block(g, d["d_head"])
    return _with([(attn.q_proj.weight, 0), (attn.q_proj.bias, 0), (attn.o_proj.weight, 1)], a, b)


def kv_group_moves(module: Any, layer: int, a: int, b: int) -> list[Move]:
    """Key/value groups a and b: their k and v rows (and biases), and their query heads in order (q rows, o columns)."""
    d = llama_dims(module)
    attn = module.model.layers[layer].self_attn
    per_group, dh = d["n_head"] // d["n_kv"], d["d_head"]
    kv_a, kv_b = _block(a, dh), _block(b, dh)
    q_a, q_b = _block(a, dh * per_group), _block(b, dh * per_group)
    return (_with([(attn.k_proj.weight, 0), (attn.k_proj.bias, 0), (attn.v_proj.weight, 0), (attn.v_proj.bias, 0)],
                  kv_a, kv_b)
            + _with([(attn.q_proj.weight, 0), (attn.q_proj.bias, 0), (attn.o_proj.weight, 1)], q_a, q_b))
