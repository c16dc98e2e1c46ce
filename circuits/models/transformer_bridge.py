"""SPEC 7: the circuit graph of a TransformerLens 4 ``TransformerBridge``, built from ``bridge.cfg``.

The residual stream of a sequential (attention, then MLP) pre-norm transformer is a sum:

    resid(l) = embed + pos + sum_{l' < l} ( sum_h result_{l',h} + b_O,l' + mlp_out_{l'} )

so every receiver is linear in the senders' outputs, up to terms equal in the clean and corrupted runs
(positional embeddings, output biases). With parallel attention and MLP (GPT-NeoX, ``cfg.parallel_attn_mlp``)
a block adds ``attn(ln1(x)) + mlp(ln2(x))``: the MLP reads the block's input, not its heads. The graph:

* Senders: the input node ``embed.hook_out`` (one node), each layer's heads ``blocks.{l}.attn.hook_result``
  (``(batch, pos, head, d_model)``, nodes on the head axis), each MLP's output ``blocks.{l}.mlp.hook_out``
  (one node).
* Receivers: each head's query/key/value input ``blocks.{l}.attn.hook_{q,k,v}_input`` (the residual before
  the layer norm, ``(batch, pos, head, d_model)``, nodes on the head axis), each MLP's input
  ``blocks.{l}.hook_mlp_in`` (one node), and the output ``blocks.{L-1}.hook_out`` (``hook_resid_post``).
* Edges: every sender into every receiver downstream of it; the heads of layer l feed the MLP of layer l
  unless attention and MLP are parallel.
* Contributions: ``contribute(a) = a`` broadcast to every receiver head (input, MLP), and
  ``contribute(result) = sum_h result[..., h, :]`` broadcast likewise (heads).

Grouped-query attention (``n_key_value_heads < n_heads``): the key and value inputs exist once per KV
group (``hook_k_input`` is ``(batch, pos, n_kv, d_model)``), so k/v receivers are per KV group: the edge
``S -> hook_k_input[g]`` feeds every query head of group g (heads ``g * n_heads/n_kv ...``). A head is still one
node with three input hooks (SPEC 7): its query input and its group's key and value inputs
(``Graph.grouped_output``). So for ACDC's dead-node rule a KV group's input is dead when no head of the group sends
anything, and for clean-up a head receives when its query input or its group's key or value input does (a head
fed only through its group's keys and values does not carry the corrupted value: its outputs stay).

Names are the canonical hook names (those ``hook.name`` reports inside a hook): ``embed.hook_out`` is
TL's ``hook_embed``, ``blocks.{l}.mlp.hook_out`` is ``blocks.{l}.hook_mlp_out``, ``blocks.{l}.hook_out``
is ``blocks.{l}.hook_resid_post``. Building the graph turns on the gated hooks it needs (``circuits.graph_of``
and every public function turn them back to the user's settings on the way out, ``circuits.hook_settings``)
(``set_use_attn_result``, ``set_use_split_qkv_input``, ``set_use_hook_mlp_in``) and runs two tokens through the
bridge once to see them fire. What the graph cannot describe is refused, naming it: norms after the sublayers
(Gemma 2/3, OLMo 2), scaled sublayer outputs (Granite's ``residual_multiplier``), mixture-of-experts MLPs, and
TransformerLens adapters that cannot give or never fire the gated hooks (docs/transformers.md, "Architectures").
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from circuits.families import Family, register
from circuits.graph import Connection, Graph, Nodes
from circuits.recording import fired

HEAD_AXIS = 2  # (batch, pos, head, d_model)
INPUT = "embed.hook_out"
_POSITIONAL = ("standard", "rotary", "alibi")


def is_bridge(model: Any) -> bool:
    """Whether ``model`` is a TransformerLens 4 ``TransformerBridge`` (checked without importing TL eagerly)."""
    return any(c.__module__.startswith("transformer_lens.model_bridge") and c.__name__ == "TransformerBridge"
               for c in type(model).__mro__)


def result_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_result"


def mlp_out_hook(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_out"


def qkv_hook(layer: int, role: str) -> str:
    return f"blocks.{layer}.attn.hook_{role}_input"


def mlp_in_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_in"


def output_hook(n_layers: int) -> str:
    return f"blocks.{n_layers - 1}.hook_out"


def _check_architecture(bridge: Any) -> None:
    """Refuse, naming the feature, what the SPEC 7 graph cannot describe additively."""
    cfg = bridge.cfg
    problems = []
    hf_cfg = getattr(getattr(bridge, "original_model", None), "config", None)
    if float(getattr(hf_cfg, "residual_multiplier", 1.0) or 1.0) != 1.0:
        problems.append(f"scaled sublayer outputs (residual_multiplier={hf_cfg.residual_multiplier}, as in Granite): "
                        "the residual stream adds a multiple of what the heads and MLPs output")
    if _post_norm(bridge):
        problems.append("a norm after each sublayer's output (post_feedforward_layernorm, as in Gemma 2/3 and OLMo 2): "
                        "the residual stream is not a sum of the senders' outputs")
    if getattr(cfg, "use_normalization_before_and_after", False):
        problems.append("normalization after the sublayers (use_normalization_before_and_after=True): "
                        "the residual stream is not a sum of the senders' outputs")
    if getattr(cfg, "post_embedding_ln", False):
        problems.append("a layer norm after the embedding (post_embedding_ln=True)")
    if getattr(cfg, "positional_embedding_type", "standard") not in _POSITIONAL:
        problems.append(f"positional_embedding_type={cfg.positional_embedding_type!r} (supported: {list(_POSITIONAL)})")
    if getattr(cfg, "num_experts", None):
        problems.append("mixture-of-experts MLPs (num_experts set)")
    if problems:
        raise ValueError(f"{architecture(bridge)}: circuits cannot build a SPEC 7 graph: "
                         + "; ".join(problems))


def _post_norm(bridge: Any) -> bool:
    """Whether the Hugging Face blocks normalise the MLP's output before adding it to the residual stream."""
    hf = getattr(bridge, "original_model", None)
    if not isinstance(hf, torch.nn.Module):
        return False
    return any(name.rsplit(".", 1)[-1] == "post_feedforward_layernorm" for name, _ in hf.named_modules())


def architecture(bridge: Any) -> str:
    return str(getattr(bridge.cfg, "architecture", None) or type(bridge).__name__)


_FIRING: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()


def _check_hooks_fire(bridge: Any, hooks: list[str]) -> None:
    """Run two tokens through the bridge with the graph's hooks attached (once per bridge): TransformerLens's
    adapter for an architecture may lack one of the gated hooks or fail with them on; refuse by name, before work."""
    if _FIRING.get(bridge):
        return
    device = next((t.device for t in bridge.parameters()), torch.device("cpu"))
    try:
        _, seen = fired(bridge, torch.zeros(1, 2, dtype=torch.long, device=device), hooks)
    except Exception as e:  # an adapter that breaks with split q/k/v inputs or per-head results on
        raise ValueError(f"{architecture(bridge)}: the bridge's forward fails with the hooks the SPEC 7 graph needs "
                         f"turned on ({type(e).__name__}: {e}); TransformerLens's adapter for this architecture does "
                         "not support them") from e
    missing = [h for h in hooks if h not in seen]
    if missing:
        raise ValueError(f"{architecture(bridge)}: TransformerLens's adapter for this architecture never fires "
                         f"{missing}, which the SPEC 7 graph needs (the gated hooks are on)")
    _FIRING[bridge] = True


def required_hooks(n_layers: int, attn_only: bool) -> list[str]:
    hooks = [INPUT]
    for layer in range(n_layers):
        hooks += [qkv_hook(layer, r) for r in "qkv"] + [result_hook(layer)]
        if not attn_only:
            hooks += [mlp_in_hook(layer), mlp_out_hook(layer)]
    return hooks + [output_hook(n_layers)]


def enable_hooks(bridge: Any) -> None:
    """Turn on the gated hooks the graph uses; a clear error if the bridge cannot."""
    for setter, flag in (("set_use_attn_result", "use_attn_result"), ("set_use_split_qkv_input", "use_split_qkv_input"),
                         ("set_use_hook_mlp_in", "use_hook_mlp_in")):
        if getattr(bridge.cfg, flag, False):
            continue
        fn = getattr(bridge, setter, None)
        if fn is None:
            raise ValueError(f"{type(bridge).__name__} has no {setter}(): circuits needs the gated hook it enables")
        try:
            fn(True)
        except NotImplementedError as e:  # TL: e.g. no per-head results for this architecture's attention
            raise ValueError(f"{architecture(bridge)}: TransformerLens cannot turn on {flag} for this architecture, "
                             f"which the SPEC 7 graph needs: {e}") from e


def _broadcast(n_heads: int) -> Callable[[Tensor], Tensor]:
    """A residual-stream tensor ``(batch, pos, d)`` copied to every receiver head: ``(batch, pos, n_heads, d)``."""
    return lambda a: a.unsqueeze(HEAD_AXIS).expand(*a.shape[:HEAD_AXIS], n_heads, a.shape[-1])


def _heads_to(n_heads: Optional[int]) -> Callable[[Tensor], Tensor]:
    """Heads' outputs ``(batch, pos, H, d)`` summed into the residual stream, copied per receiver head if any."""
    if n_heads is None:
        return lambda a: a.sum(dim=HEAD_AXIS)
    return lambda a: a.sum(dim=HEAD_AXIS, keepdim=True).expand(*a.shape[:HEAD_AXIS], n_heads, a.shape[-1])


def _identity(a: Tensor) -> Tensor:
    return a


def _connections_into(receiver: str, n_recv: Optional[int], senders: list[tuple[str, bool]], n_heads: int
                      ) -> list[Connection]:
    """Connections from ``senders`` ((hook, is_heads)) into ``receiver`` (``n_recv`` heads, None: one node)."""
    out = []
    for hook, heads in senders:
        if heads:
            fn = _heads_to(n_recv)
        else:
            fn = _identity if n_recv is None else _broadcast(n_recv)
        mix = _ones(1 if n_recv is None else n_recv, n_heads if heads else 1)
        out.append(Connection(sender=hook, receiver=receiver, contribute=fn, node_mix=mix))
    return out


def _ones(n_receivers: int, n_senders: int) -> Callable[[], Tensor]:
    """``node_mix`` of a residual-stream connection: every sender node reaches every receiver node, weight 1."""
    return lambda: torch.ones(n_receivers, n_senders, dtype=torch.float64)


def bridge_graph(bridge: Any) -> Graph:
    """SPEC 7's graph of ``bridge`` (module docstring); turns on the gated hooks; errors name what is missing."""
    cfg = bridge.cfg
    _check_architecture(bridge)
    L, H = int(cfg.n_layers), int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or H)
    if H % n_kv:
        raise ValueError(f"n_heads={H} is not a multiple of n_key_value_heads={n_kv}")
    attn_only = bool(getattr(cfg, "attn_only", False))
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
    enable_hooks(bridge)
    hook_dict = bridge.hook_dict  # a property, rebuilt on every access
    missing = [h for h in required_hooks(L, attn_only) if h not in hook_dict]
    if missing:
        raise ValueError(f"{architecture(bridge)}: the bridge lacks hook points the SPEC 7 graph needs: {missing}")
    _check_hooks_fire(bridge, required_hooks(L, attn_only))

    nodes: dict[str, Nodes] = {INPUT: Nodes(INPUT, 1, axis=None)}
    node_output: dict[str, str] = {}
    grouped_output: dict[str, str] = {}
    conns: list[Connection] = []
    senders: list[tuple[str, bool]] = [(INPUT, False)]
    for layer in range(L):
        res = result_hook(layer)
        nodes[res] = Nodes(res, H, axis=HEAD_AXIS)
        for role in "qkv":
            hook, count = qkv_hook(layer, role), (H if role == "q" else n_kv)
            nodes[hook] = Nodes(hook, count, axis=HEAD_AXIS)
            if count == H:
                node_output[hook] = res
            else:  # a key/value input per KV group: its node g feeds the group's query heads (SPEC 7)
                grouped_output[hook] = res
            conns += _connections_into(hook, count, senders, H)
        if not attn_only:
            m_in, m_out = mlp_in_hook(layer), mlp_out_hook(layer)
            nodes[m_in], nodes[m_out] = Nodes(m_in, 1, axis=None), Nodes(m_out, 1, axis=None)
            node_output[m_in] = m_out
            # sequential blocks: the MLP reads the residual after this layer's heads; parallel: the same as the heads
            conns += _connections_into(m_in, None, senders if parallel else senders + [(res, True)], H)
        senders.append((res, True))
        if not attn_only:
            senders.append((m_out, False))
    out = output_hook(L)
    nodes[out] = Nodes(out, 1, axis=None)
    conns += _connections_into(out, None, senders, H)
    return Graph(nodes=nodes, connections=tuple(conns), output=out, node_output=node_output,
                 grouped_output=grouped_output)


def check_bridge_inputs(bridge: Any, clean: Any, corrupted: Any) -> None:
    """Refuse, before any work, what the patching rule cannot handle on a bridge: padding (an attention mask; pad
    tokens: ``circuits.validate_tokens``) and non-token inputs. Dropout in training mode is
    ``patching.check_eval_mode``'s."""
    for name, x in (("clean", clean), ("corrupted", corrupted)):
        if isinstance(x, dict) or hasattr(x, "attention_mask"):
            raise ValueError(f"{name}: padded batches (an attention_mask) are not supported; pass equal-length token "
                             "tensors without padding")
        if isinstance(x, Tensor) and (x.is_floating_point() or x.dim() != 2):
            raise ValueError(f"{name}: a bridge takes token ids of shape (batch, pos), got {x.dtype} {tuple(x.shape)}")


def unwire_copied_capture_hooks(bridge: Any) -> None:
    """Make a deep copy of a bridge wire its own capture hooks. TransformerLens wires them on a block's first forward
    (``_maybe_wire_capture_hooks``: the split q/k/v input fork, ``hook_mlp_in``), as closures over that block; a copy
    of a bridge that has run keeps the original's closures, so its ``hook_mlp_in`` follows the original's setting and
    never fires its own hooks. They are dropped from the copy (by handle id: the copy's hook dicts keep the ids)
    and rewired, onto the copy, by its first forward."""
    for block in getattr(bridge, "blocks", ()):
        handles = getattr(block, "_capture_hook_handles", None)
        if not handles:
            continue
        ids = {h.id for h in handles}
        for module in block.modules():
            for hooks in (module._forward_pre_hooks, module._forward_hooks, module._forward_pre_hooks_with_kwargs,
                          module._forward_hooks_with_kwargs, module._forward_hooks_always_called):
                for i in ids & set(hooks):
                    del hooks[i]
        handles.clear()
        block._capture_hooks_wired = False


def _explain(bridge: Any) -> str:
    return (f"{architecture(bridge)}: the SPEC 7 graph does not describe this bridge exactly; its architecture adds "
            "to the residual stream something the graph lacks, scaled or normalised sublayer outputs for instance")


register(Family("transformer_bridge", is_bridge, bridge_graph, check_inputs=check_bridge_inputs, explain=_explain,
                prepare=enable_hooks, after_copy=unwire_copied_capture_hooks, acdc_engine="circuits.acdc.attention.engine:Attention"))
