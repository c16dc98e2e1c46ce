"""A functional re-implementation of a bridge's blocks from its weights (GPT-2, GPT-BigCode, GPT-NeoX and the
Llama-style families of ``_FAMILIES``: Llama, Mistral, Qwen 2 and 3, Phi-3, Gemma, OLMo, Starcoder 2, StableLM,
SmolLM 3), for
the fast ACDC engine (``circuits.acdc.attention.engine``), which recomputes single heads at chosen positions.

Per layer, on SPEC 7's per-head receiver inputs ``x`` (the residual stream before the norm, copied per head):

    q_h = rot(norm1(x_q[h]) W_Q[h] + b_Q[h])        k_g, v_g likewise from x_k[g], x_v[g] (g: KV group)
    pattern_h = softmax(q_h k_g(h)^T / sqrt(d_head) + causal)   z_h = pattern_h v_g(h)   (or in float32, below)
    result_h = z_h W_O[h]                            (``hook_result``; the layer adds b_O once)
    mlp = W_out act(norm2(x) W_in + b_in) + b_out    (gated: W_down (act(x W_gate) * (x W_up)))
    logits = norm_f(resid) W_U + b_U

The MLP reads the residual stream after the layer's heads, or (GPT-NeoX with ``use_parallel_residual``,
``parallel``) the block's input, as the heads do.

``norm`` is LayerNorm ``(x - mean) / sqrt(var + eps) * w + b`` or RMSNorm ``x / sqrt(mean(x^2) + eps) * w`` (in
float32 and cast back, as HF's Llama RMSNorm does even on float64 inputs; Gemma: ``* (1 + w)`` before the cast;
OLMo: a LayerNorm without ``w, b`` in float32);
``rot`` is rotary (``q cos + rotate_half(q) sin``) for the Llama-style families and GPT-NeoX (on the first
``rotary_dim`` features of each head only, the rest passed through: Pythia rotates a quarter), the identity for
GPT-2 (learned positions added to the embedding). Bridges of fused q/k/v projections (GPT-2, GPT-NeoX, Phi-3)
recompute attention in the model's dtype; the others run HF's attention, whose softmax is taken in float32
(``softmax32``). Checked against the bridge's own hooks to 1e-12 in float64 (tests/circuits/test_bridge_blocks.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

# architecture -> family; "llama": rotary from the model's module, any norm / MLP the bridge's components hold
# (each checked equal to the bridge's hooks: test_bridge_blocks)
_FAMILIES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
             "Qwen2ForCausalLM": "llama", "Qwen3ForCausalLM": "llama", "Phi3ForCausalLM": "llama",
             "Starcoder2ForCausalLM": "llama", "StableLmForCausalLM": "llama", "SmolLM3ForCausalLM": "llama",
             "GemmaForCausalLM": "llama", "OlmoForCausalLM": "llama", "GPTNeoXForCausalLM": "neox",
             "GPTBigCodeForCausalLM": "gpt2"}


def _linear(module: Any) -> tuple[Tensor, Optional[Tensor]]:
    """``(W (in, out), b)`` of a ``torch.nn.Linear`` or HF ``Conv1D`` (possibly wrapped by a ``LinearBridge``)."""
    mod = getattr(module, "original_component", None) or module
    w = mod.weight.detach()
    if type(mod).__name__ == "Conv1D":
        return w, None if mod.bias is None else mod.bias.detach()
    return w.t(), None if getattr(mod, "bias", None) is None else mod.bias.detach()


class NormParams(NamedTuple):
    """A norm's parameters: ``weight``, ``bias``, ``eps``, ``rms`` (RMSNorm, else LayerNorm) and ``style``."""

    weight: Optional[Tensor]
    bias: Optional[Tensor]
    eps: float
    rms: bool
    style: str


def _norm_params(bridge_norm: Any) -> NormParams:
    """``NormParams(weight, bias, eps, rms, style)``; style ``"gemma"``: RMSNorm scaled by ``1 + weight`` in float32, then cast
    (Gemma); ``"float32"``: a LayerNorm without parameters computed in float32, then cast (OLMo); else ``""``."""
    mod = bridge_norm.original_component
    name = type(mod).__name__
    rms = "RMS" in name
    eps = float(getattr(mod, "eps", getattr(mod, "variance_epsilon", 1e-5)))
    bias = None if rms or getattr(mod, "bias", None) is None else mod.bias.detach()
    weight = getattr(mod, "weight", None)
    style = "gemma" if name.startswith("Gemma") and rms else "float32" if weight is None and not rms else ""
    return NormParams(None if weight is None else weight.detach(), bias, eps, rms, style)


def norm(x: Tensor, params: NormParams) -> Tensor:
    """LayerNorm or RMSNorm over the last axis, in the dtypes HF's modules use (module docstring)."""
    w, b, eps, rms, style = params
    if rms:  # as HF's RMSNorm: computed in float32 whatever the dtype, then cast back (so float64 matches it)
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        if style == "gemma":
            return (h * (1.0 + w.float())).to(x.dtype)
        return w * h.to(x.dtype)
    if style == "float32":
        return torch.nn.functional.layer_norm(x.to(torch.float32), (x.shape[-1],), None, None, eps).to(x.dtype)
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)  # the kernel nn.LayerNorm runs


class MLPWeights(NamedTuple):
    """An MLP's weights as ``torch.nn.Linear`` stores them, ``(out, in)``; ``W_gate`` None unless gated."""

    W_in: Tensor
    b_in: Optional[Tensor]
    W_gate: Optional[Tensor]
    W_out: Tensor
    b_out: Optional[Tensor]


@dataclass
class Layer:
    """One block's weights, heads split: W_Q ``(H, d, dh)``, W_K/W_V ``(G, d, dh)``, W_O ``(H, dh, d)``."""

    norm1: NormParams
    norm2: NormParams
    W_Q: Tensor
    b_Q: Optional[Tensor]
    W_K: Tensor
    b_K: Optional[Tensor]
    W_V: Tensor
    b_V: Optional[Tensor]
    W_O: Tensor
    b_O: Optional[Tensor]
    mlp: MLPWeights
    qk_norm: Optional[tuple] = None  # (norm of q, norm of k) over each head's features (Qwen 3), else None
    rope: bool = True  # whether rotary applies in this layer (SmolLM 3's no_rope_layers: some layers have none)


class BridgeBlocks:
    """The weights of a bridge of ``_FAMILIES`` and the block maths of the module docstring, run outside the
    bridge."""

    def __init__(self, bridge: Any) -> None:
        cfg = bridge.cfg
        reason = unsupported(bridge)
        if reason is not None:
            raise ValueError(f"bridge_blocks cannot describe this bridge: {reason}")
        self.family = _FAMILIES[type(bridge.original_model).__name__]
        # as the bridge: a JointQKV* attention bridge (fused q/k/v: GPT-2, GPT-NeoX, Phi-3) recomputes attention in the
        # model's dtype; the others run HF's attention, which takes the softmax in float32
        self.softmax32 = not type(bridge.blocks[0].attn).__name__.startswith("JointQKV")
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.n_layers, self.n_heads = int(cfg.n_layers), int(cfg.n_heads)
        self.n_kv = int(getattr(cfg, "n_key_value_heads", None) or self.n_heads)
        self.d_model = int(cfg.d_model)
        self.d_head = int(getattr(cfg, "d_head", None) or self.d_model // self.n_heads)
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.act: Callable[[Tensor], Tensor] = _activation(bridge.blocks[0].mlp.original_component)
        self.layers = [self._layer(block) for block in bridge.blocks]
        self.norm_f = _norm_params(bridge.ln_final)
        self.W_U, self.b_U = _linear(bridge.unembed)
        self.embedding = bridge.embed
        pos = getattr(bridge, "pos_embed", None)
        self.wpe = None if pos is None else pos.original_component.weight.detach()
        self.rotary = getattr(bridge, "rotary_emb", None)
        self.rotary = None if self.rotary is None else (self.rotary.original_component or self.rotary)

    def _layer(self, block: Any) -> Layer:
        H, G, dh, d = self.n_heads, self.n_kv, self.d_head, self.d_model
        attn = block.attn
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (_linear(attn.q), _linear(attn.k), _linear(attn.v), _linear(attn.o))
        heads = lambda w, n: w.reshape(d, n, dh).permute(1, 0, 2).contiguous()  # noqa: E731
        hb = lambda b, n: None if b is None else b.reshape(n, dh)  # noqa: E731
        mlp = block.mlp
        w_in, b_in = _linear(getattr(mlp, "in"))
        w_out, b_out = _linear(mlp.out)
        w_gate = _linear(mlp.gate)[0] if hasattr(mlp, "gate") else None
        # MLP weights kept (out, in) contiguous, for F.linear: MKL's float64 product is faster that way round on
        # these shapes than ``x @ W`` with W (in, out) (benchmarks/bench_matmul_layout.py: 1.1-1.2x)
        linear = lambda w: None if w is None else w.t().contiguous()  # noqa: E731
        qk = (_norm_params(attn.q_norm), _norm_params(attn.k_norm)) if hasattr(attn, "q_norm") else None
        rope = bool(getattr(attn.original_component, "use_rope", True))
        return Layer(_norm_params(block.ln1), _norm_params(block.ln2), heads(wq, H), hb(bq, H), heads(wk, G),
                     hb(bk, G), heads(wv, G), hb(bv, G), wo.reshape(H, dh, d).contiguous(), bo,
                     MLPWeights(linear(w_in), b_in, linear(w_gate), linear(w_out), b_out), qk, rope)

    # ------------------------------------------------------------------ pieces the fast engine recomputes
    def embed(self, tokens: Int[Tensor, "batch pos"]) -> tuple[Float[Tensor, "batch pos d"], Float[Tensor, "batch pos d"]]:
        """(token embedding ``embed.hook_out``, the positional part: learned positions or zeros)."""
        e = self.embedding(tokens)  # the bridge's own embedding: Gemma scales it by sqrt(d_model)
        if self.wpe is None:
            return e, torch.zeros_like(e)
        return e, self.wpe[torch.arange(tokens.shape[1], device=tokens.device)].expand_as(e)

    def rot(self, T: int, device: Any, dtype: Any) -> Optional[tuple[Tensor, Tensor]]:
        """Rotary ``(cos, sin)`` of positions ``0..T-1``, ``(T, dh)``, from the model's own rotary module."""
        if self.rotary is None:
            return None
        x = torch.zeros(1, T, self.d_model, device=device, dtype=dtype)
        cos, sin = self.rotary(x, torch.arange(T, device=device).unsqueeze(0))
        return cos[0].to(dtype), sin[0].to(dtype)

    def project(self, layer: int, role: str, x: Float[Tensor, "*b pos h d"], heads: Tensor,
                rot: Optional[tuple[Tensor, Tensor]], pos: Tensor) -> Float[Tensor, "*b pos h dh"]:
        """``rot(norm1(x) W[heads] + b[heads])`` for role q/k/v; ``heads`` indexes the heads (q) or KV groups."""
        L = self.layers[layer]
        W, b = {"q": (L.W_Q, L.b_Q), "k": (L.W_K, L.b_K), "v": (L.W_V, L.b_V)}[role]
        out = torch.einsum("...hd,hde->...he", norm(x, L.norm1), W[heads])
        if b is not None:
            out = out + b[heads]
        return self.rotate(out, role, rot, pos, layer)

    def rotate(self, out: Float[Tensor, "*b pos h dh"], role: str, rot: Optional[tuple[Tensor, Tensor]],
               pos: Tensor, layer: int) -> Float[Tensor, "*b pos h dh"]:
        """Rotary on q and k at positions ``pos`` (``out cos + rotate_half(out) sin``), after the per-head q/k norm
        where the layer has one (Qwen 3); v and rotary-free models as is."""
        qk = self.layers[layer].qk_norm
        if qk is not None and role != "v":
            out = norm(out, qk[0] if role == "q" else qk[1])
        if rot is None or role == "v" or not self.layers[layer].rope:
            return out
        cos, sin = rot[0][pos].unsqueeze(-2), rot[1][pos].unsqueeze(-2)  # (pos, 1, rotary_dim)
        r = cos.shape[-1]
        part = out if r == out.shape[-1] else out[..., :r]
        half = r // 2
        rotated = torch.cat((-part[..., half:], part[..., :half]), dim=-1)
        part = part * cos + rotated * sin
        return part if r == out.shape[-1] else torch.cat((part, out[..., r:]), dim=-1)

    def attend(self, q: Float[Tensor, "*b qpos h dh"], k: Float[Tensor, "*b pos h dh"], v: Float[Tensor, "*b pos h dh"],
               qpos: Tensor) -> Float[Tensor, "*b qpos h dh"]:
        """Causal attention of queries at positions ``qpos`` over every key: ``softmax(q k^T / sqrt(dh)) v``; leading
        axes broadcast. A softmax in the inputs' dtype is torch's fused ``scaled_dot_product_attention`` (one call in
        place of six ops); a float32 softmax (HF's Llama family) is written out."""
        allowed = torch.arange(k.shape[-3], device=q.device).unsqueeze(0) <= qpos.unsqueeze(1)  # (qpos, pos)
        if not self.softmax32:
            lead = torch.broadcast_shapes(q.shape[:-3], k.shape[:-3], v.shape[:-3])
            q, k, v = (t.expand(*lead, *t.shape[-3:]).reshape(-1, *t.shape[-3:]).transpose(1, 2) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=self.scale).transpose(1, 2)
            return out.reshape(*lead, *out.shape[1:])
        scores = torch.einsum("...qhe,...khe->...hqk", q, k) * self.scale
        scores = scores.masked_fill(~allowed, float("-inf"))
        pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # as HF's Llama: float32, cast back
        return torch.einsum("...hqk,...khe->...qhe", pattern, v)

    def result(self, layer: int, z: Float[Tensor, "*b pos h dh"], heads: Tensor) -> Float[Tensor, "*b pos h d"]:
        """``hook_result``: each head's output ``z_h W_O[h]`` (without b_O)."""
        return self.result_by_head(layer, z, heads).movedim(0, -2)

    def result_by_head(self, layer: int, z: Float[Tensor, "*b pos h dh"], heads: Tensor) -> Float[Tensor, "h *b pos d"]:
        """``result``, head axis first: one batched product over the heads, no copy of the output."""
        zh = z.movedim(-2, 0)
        out = torch.bmm(zh.reshape(zh.shape[0], -1, zh.shape[-1]), self.layers[layer].W_O[heads])
        return out.view(*zh.shape[:-1], out.shape[-1])

    def attn_bias(self, layer: int, like: Tensor) -> Tensor:
        b = self.layers[layer].b_O
        return torch.zeros(like.shape[-1], dtype=like.dtype, device=like.device) if b is None else b

    def mlp(self, layer: int, x: Float[Tensor, "*b d"]) -> Float[Tensor, "*b d"]:
        """The MLP (plain or gated) on its input before the norm."""
        L = self.layers[layer]
        w_in, b_in, w_gate, w_out, b_out = L.mlp
        h = norm(x, L.norm2)
        pre = F.linear(h, w_in, b_in)
        if w_gate is None:
            return self.mlp_out(layer, pre)
        return F.linear(self.act(F.linear(h, w_gate)) * pre, w_out, b_out)

    def mlp_out(self, layer: int, pre: Float[Tensor, "*b m"]) -> Float[Tensor, "*b d"]:
        """An ungated MLP from its first map's output ``pre = norm2(x) W_in + b_in`` on."""
        w_out, b_out = self.layers[layer].mlp.W_out, self.layers[layer].mlp.b_out
        return F.linear(self.act(pre), w_out, b_out)

    def unembed(self, resid: Float[Tensor, "*b d"]) -> Float[Tensor, "*b vocab"]:
        out = norm(resid, self.norm_f) @ self.W_U
        return out if self.b_U is None else out + self.b_U


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU's tanh form ``0.5 x (1 + tanh(y))``, ``y = sqrt(2/pi) (x + 0.044715 x^3)``, computed as the equal
    ``x / (1 + exp(-2y))``: 9-15 ns per float64 element on the 2-core VM (by host and day) against ~17 for torch's
    ``gelu(approximate="tanh")`` kernel (``benchmarks/bench_gelu.py``), within 1e-15 of it. One temporary: ``-2y`` as
    ``x (b + a x^2)`` (``addcmul``), the quotient written into it. Large negative ``x`` gives ``x / inf = -0``, the
    function's limit."""
    y = torch.addcmul(x.new_full((), -2.0 * _GELU_C), x, x, value=-2.0 * 0.044715 * _GELU_C)
    y.mul_(x).exp_().add_(1.0)
    return torch.div(x, y, out=y)


_FUSED = {  # HF activation modules and the torch kernels computing the same function
    "NewGELUActivation": gelu_tanh,
    "GELUTanh": gelu_tanh,
    "GELUActivation": torch.nn.functional.gelu,
    "SiLUActivation": torch.nn.functional.silu,
    "SiLU": torch.nn.functional.silu,
}


def _activation(mlp: Any) -> Callable[[Tensor], Tensor]:
    """The MLP's activation: a fused torch kernel for the common HF ones, else the module itself."""
    act = getattr(mlp, "act", None) or getattr(mlp, "act_fn", None) or getattr(mlp, "activation_fn", None)
    if act is None:
        raise ValueError(f"bridge_blocks: cannot find the activation of {type(mlp).__name__}")
    return _FUSED.get(type(act).__name__, act)


def unsupported(bridge: Any, seq_len: Optional[int] = None) -> Optional[str]:
    """Why ``BridgeBlocks`` cannot describe ``bridge`` on ``seq_len`` positions, or None when it can (the families of
    ``_FAMILIES``, without what their blocks would compute differently)."""
    arch = type(getattr(bridge, "original_model", None)).__name__
    if arch not in _FAMILIES:
        return f"{arch} is not one of {sorted(_FAMILIES)}"
    hf = bridge.original_model.config
    if _FAMILIES[arch] == "gpt2" and (getattr(hf, "scale_attn_by_inverse_layer_idx", False)
                                      or not getattr(hf, "scale_attn_weights", True)):
        return "GPT-2 attention scaling other than 1/sqrt(d_head)"
    if getattr(hf, "qk_layernorm", False):
        return "norms on the queries and keys (qk_layernorm)"
    rope = getattr(hf, "rope_parameters", None)
    factor = getattr(hf, "partial_rotary_factor", None)
    factor = rope.get("partial_rotary_factor", factor) if isinstance(rope, dict) else factor
    d_head = int(getattr(bridge.cfg, "d_head", None) or bridge.cfg.d_model // bridge.cfg.n_heads)
    if _FAMILIES[arch] == "llama" and factor is not None and int(d_head * float(factor)) % 2:
        return f"an odd rotary width ({d_head} x partial_rotary_factor {factor}), which HF families rotate differently"
    window = getattr(hf, "sliding_window", None)
    if window is not None and seq_len is not None and seq_len > int(window):
        return f"sliding-window attention over {window} positions, shorter than the {seq_len} given"
    return None


def supported(bridge: Any, seq_len: Optional[int] = None) -> bool:
    """Whether ``BridgeBlocks`` can describe ``bridge`` on ``seq_len`` positions (``unsupported`` says why not)."""
    return unsupported(bridge, seq_len) is None
