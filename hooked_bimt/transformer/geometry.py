"""SPEC 8: where the neurons of a GPT-2-style transformer sit, and which linear maps BIMT penalises.

Every neuron set lies on its own line in [0, 1], n neurons at the cell centres 1/(2n), 3/(2n), ..., 1 - 1/(2n):

- the residual stream: ``d_model`` neurons, ONE set shared by every layer;
- attention: the fused q/k/v outputs are three folded copies of the ``d_model`` coordinates, head h owning the
  contiguous block ``h*d_head .. (h+1)*d_head`` of each copy; the output projection reads the same head-grouped
  coordinates;
- MLP hidden neurons: ``d_mlp`` coordinates on their own line;
- the vocabulary (embedding rows, unembedding columns): ``d_vocab`` coordinates.

A penalised map is described by ``PenalisedMap``: its weight parameter, how to read it as (out x in) (HF's Conv1D
stores (in x out); ``nn.Embedding`` stores (vocab x d_model), i.e. (in x out) of the map vocab -> residual),
its bias and the coordinates of its receivers and senders. Coordinates depend only on the shapes, never on
the weights: a swap permutes weights, the positions stay put.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hooked_bimt.transformer.coords import PenalisedMap, folded, line, plain
from hooked_bimt.transformer.llama import is_llama, llama_dims, llama_maps

__all__ = ["PenalisedMap", "check_gpt2", "dims", "folded", "line", "penalised_maps", "plain"]


def check_gpt2(module: Any) -> None:
    """A plain Hugging Face GPT-2-style LM (``GPT2LMHeadModel``) with untied embeddings; else a clear error."""
    if not isinstance(module, nn.Module) or not hasattr(module, "transformer") or not hasattr(module, "lm_head"):
        raise TypeError(f"hooked_bimt.transformer needs a Hugging Face GPT2LMHeadModel (cost and swaps also take a "
                        f"LlamaForCausalLM), got {type(module).__name__}")
    for sub in (module.transformer, module.lm_head, module.transformer.wte):
        plain(sub)
    for block in module.transformer.h:
        plain(block)
        plain(block.attn)
    if module.lm_head.weight is module.transformer.wte.weight:
        raise ValueError("the embedding and unembedding are tied (tie_word_embeddings=True): SPEC 8 penalises them as "
                         "two maps; build the model with tie_word_embeddings=False")


def dims(module: Any) -> dict[str, int]:
    """``d_vocab``, ``d_model``, ``n_head``, ``d_head``, ``d_mlp``, ``n_layer`` of a GPT-2-style module (a Llama
    module: ``llama.llama_dims``, with ``n_kv``)."""
    if is_llama(module):
        return llama_dims(module)
    check_gpt2(module)
    cfg = module.config
    d_vocab, d_model = module.transformer.wte.weight.shape
    d_mlp = module.transformer.h[0].mlp.c_fc.weight.shape[1]
    return {"d_vocab": int(d_vocab), "d_model": int(d_model), "n_head": int(cfg.n_head),
            "d_head": int(d_model) // int(cfg.n_head), "d_mlp": int(d_mlp), "n_layer": len(module.transformer.h)}


def penalised_maps(module: Any) -> list[PenalisedMap]:
    """SPEC 8's maps in forward order: W_E; per block q/k/v, attention output, MLP in, MLP out; W_U (a Llama
    module: ``llama.llama_maps``)."""
    if is_llama(module):
        return llama_maps(module)
    d = dims(module)
    dev = module.transformer.wte.weight.device
    vocab, res = line(d["d_vocab"], dev), line(d["d_model"], dev)
    qkv, mlp = folded(d["d_model"], 3, dev), line(d["d_mlp"], dev)
    wte = module.transformer.wte
    maps = [PenalisedMap("embed", wte.weight, True, None, res, vocab)]
    for l, block in enumerate(module.transformer.h):
        a, m = block.attn, block.mlp
        maps += [PenalisedMap(f"blocks.{l}.attn.qkv", a.c_attn.weight, True, a.c_attn.bias, qkv, res),
                 PenalisedMap(f"blocks.{l}.attn.out", a.c_proj.weight, True, a.c_proj.bias, res, res),
                 PenalisedMap(f"blocks.{l}.mlp.in", m.c_fc.weight, True, m.c_fc.bias, mlp, res),
                 PenalisedMap(f"blocks.{l}.mlp.out", m.c_proj.weight, True, m.c_proj.bias, res, mlp)]
    maps.append(PenalisedMap("unembed", module.lm_head.weight, False, module.lm_head.bias, vocab, res))
    return maps
