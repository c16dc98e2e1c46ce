"""``HookedAttnOnly``: a small attention-only transformer with TransformerLens hook names, no LayerNorm.

Forward pass (tokens ``(batch, pos)``, causal attention, split q/k/v inputs as in TL's
``use_split_qkv_input`` mode)::

    hook_embed        W_E[tokens]                                   (batch, pos, d_model)
    hook_pos_embed    W_pos[:pos]                                   (batch, pos, d_model)
    resid_0 = embed + pos_embed
    blocks.{l}.hook_{q,k,v}_input   resid_l repeated per head       (batch, pos, head, d_model)
    blocks.{l}.attn.hook_{q,k,v}    x_h W_{Q,K,V}[h] + b            (batch, pos, head, d_head)
    blocks.{l}.attn.hook_pattern    softmax(q k^T / sqrt(d_head)), causal   (batch, head, q_pos, k_pos)
    blocks.{l}.attn.hook_z          pattern @ v                     (batch, pos, head, d_head)
    blocks.{l}.hook_attn_out        sum_h z_h W_O[h] + b_O          (batch, pos, d_model)
    blocks.{l}.hook_resid_pre / hook_resid_post    resid_l / resid_{l+1} = resid_l + attn_out
    hook_logits       resid_L[:, -1] W_U + b_U                      (batch, d_vocab)  (LAST position only)

Circuit graph: heads are nodes (axis 2 of ``hook_z`` and of the q/k/v inputs); ``hook_embed``,
``hook_pos_embed`` and ``hook_logits`` are one node each. Every head input of layer l is fed by the
two embeddings and by every head of layers < l through ``W_O``; the logits (last position) by all of
them through ``W_U``. The attention pattern is not linear in the q/k inputs, but each receiver *input*
is a linear sum of the senders' contributions (plus ``b_O`` terms, a constant), which is all the
protocol needs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from einops import einsum
from jaxtyping import Float, Int
from torch import Tensor, nn

from hooked_bimt._compat import HookedRootModule, HookPoint
from hooked_bimt.zoo.residual_mlp import _positive_int


class _Attention(nn.Module):
    """Per-head weights ``W_Q, W_K, W_V (head, d_model, d_head)``, ``W_O (head, d_head, d_model)``."""

    def __init__(self, n_heads: int, d_model: int, d_head: int) -> None:
        super().__init__()
        std = 1.0 / math.sqrt(d_model)
        self.W_Q = nn.Parameter(torch.randn(n_heads, d_model, d_head) * std)
        self.W_K = nn.Parameter(torch.randn(n_heads, d_model, d_head) * std)
        self.W_V = nn.Parameter(torch.randn(n_heads, d_model, d_head) * std)
        self.W_O = nn.Parameter(torch.randn(n_heads, d_head, d_model) / math.sqrt(n_heads * d_head))
        self.b_Q = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_K = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_V = nn.Parameter(torch.zeros(n_heads, d_head))
        self.b_O = nn.Parameter(torch.zeros(d_model))
        for name in ("q", "k", "v", "attn_scores", "pattern", "z"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> Tensor:
        proj = "batch pos head d_model, head d_model d_head -> batch pos head d_head"
        q = self.hook_q(einsum(q_in, self.W_Q, proj) + self.b_Q)
        k = self.hook_k(einsum(k_in, self.W_K, proj) + self.b_K)
        v = self.hook_v(einsum(v_in, self.W_V, proj) + self.b_V)
        scores = einsum(q, k, "batch q_pos head d_head, batch k_pos head d_head -> batch head q_pos k_pos")
        scores = scores / math.sqrt(q.shape[-1])
        n = scores.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
        scores = self.hook_attn_scores(scores.masked_fill(~causal, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(einsum(pattern, v, "batch head q_pos k_pos, batch k_pos head d_head -> batch q_pos head d_head"))
        return einsum(z, self.W_O, "batch pos head d_head, head d_head d_model -> batch pos d_model") + self.b_O


class _AttnBlock(nn.Module):
    def __init__(self, n_heads: int, d_model: int, d_head: int) -> None:
        super().__init__()
        self.attn = _Attention(n_heads, d_model, d_head)
        self.hook_q_input = HookPoint()
        self.hook_k_input = HookPoint()
        self.hook_v_input = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_pre = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: Tensor, n_heads: int) -> Tensor:
        resid = self.hook_resid_pre(resid)
        def per_head() -> Tensor:  # a fresh view for each input, so each hook sees its own tensor
            return resid.unsqueeze(2).expand(-1, -1, n_heads, -1)

        out = self.attn(self.hook_q_input(per_head()), self.hook_k_input(per_head()), self.hook_v_input(per_head()))
        return self.hook_resid_post(resid + self.hook_attn_out(out))


class HookedAttnOnly(HookedRootModule):
    """Attention-only transformer: embed + pos-embed, ``n_layers`` causal attention layers, unembed.

    Args:
        n_layers, n_heads, d_model, d_head: the usual transformer sizes.
        n_ctx: maximum sequence length.
        d_vocab: vocabulary size (also the number of logits).
    """

    def __init__(self, n_layers: int, n_heads: int, d_model: int, d_head: int, n_ctx: int, d_vocab: int) -> None:
        super().__init__()
        self.n_layers = _positive_int("n_layers", n_layers)
        self.n_heads = _positive_int("n_heads", n_heads)
        self.d_model = _positive_int("d_model", d_model)
        self.d_head = _positive_int("d_head", d_head)
        self.n_ctx = _positive_int("n_ctx", n_ctx)
        self.d_vocab = _positive_int("d_vocab", d_vocab)
        self.W_E = nn.Parameter(torch.randn(d_vocab, d_model))
        self.W_pos = nn.Parameter(torch.randn(n_ctx, d_model))
        self.W_U = nn.Parameter(torch.randn(d_model, d_vocab) / math.sqrt(d_model))
        self.b_U = nn.Parameter(torch.zeros(d_vocab))
        self.blocks = nn.ModuleList(_AttnBlock(n_heads, d_model, d_head) for _ in range(n_layers))
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.hook_logits = HookPoint()
        self.setup()

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype

    def config(self) -> dict[str, Any]:
        """What ``HookedAttnOnly(**config)`` needs to rebuild this architecture."""
        return {k: getattr(self, k) for k in ("n_layers", "n_heads", "d_model", "d_head", "n_ctx", "d_vocab")}

    def check_input(self, tokens: Tensor) -> Int[Tensor, "batch pos"]:
        """Validate a token batch ``(batch, pos)`` of integers in ``[0, d_vocab)`` with ``pos <= n_ctx``."""
        if not isinstance(tokens, Tensor):
            raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
            raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
        if tokens.dim() != 2 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must have shape (batch, pos), got {tuple(tokens.shape)}")
        if tokens.shape[1] > self.n_ctx:
            raise ValueError(f"sequence length {tokens.shape[1]} exceeds n_ctx={self.n_ctx}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.d_vocab):
            raise ValueError(f"token ids must lie in [0, {self.d_vocab}), got range "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        return tokens.to(self.device)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab"]:
        tokens = self.check_input(tokens)
        embed = self.hook_embed(self.W_E[tokens])
        pos = self.hook_pos_embed(self.W_pos[: tokens.shape[1]].unsqueeze(0).expand(tokens.shape[0], -1, -1))
        resid = embed + pos
        for block in self.blocks:
            resid = block(resid, self.n_heads)
        return self.hook_logits(resid[:, -1] @ self.W_U + self.b_U)

    def circuit_graph(self):
        """Heads as nodes; see the module docstring for the edges."""
        from circuits.graph import Connection, Graph, Nodes

        H = self.n_heads
        nodes = {h: Nodes(h, 1, axis=None) for h in ("hook_embed", "hook_pos_embed", "hook_logits")}
        node_output: dict[str, str] = {}
        conns: list[Connection] = []
        senders: list[tuple[str, Any]] = [("hook_embed", None), ("hook_pos_embed", None)]
        for l, block in enumerate(self.blocks):
            z = f"blocks.{l}.attn.hook_z"
            nodes[z] = Nodes(z, H, axis=2)
            for kind in ("q", "k", "v"):
                receiver = f"blocks.{l}.hook_{kind}_input"
                nodes[receiver] = Nodes(receiver, H, axis=2)
                node_output[receiver] = z
                for sender, W_O in senders:
                    conns.append(Connection(sender, receiver, _to_heads(W_O, H)))
            senders.append((z, block.attn.W_O))
        for sender, W_O in senders:
            conns.append(Connection(sender, "hook_logits", _to_logits(W_O, self)))
        return Graph(nodes=nodes, connections=tuple(conns), output="hook_logits", node_output=node_output)


def _write(a: Tensor, W_O: Tensor | None) -> Tensor:
    """A sender's write into the residual stream: the embedding itself, or ``sum_h z_h W_O[h]``."""
    return a if W_O is None else torch.einsum("...hd,hdm->...m", a, W_O)


def _to_heads(W_O: Tensor | None, n_heads: int):
    return lambda a: _write(a, W_O).unsqueeze(2).expand(-1, -1, n_heads, -1)


def _to_logits(W_O: Tensor | None, model: HookedAttnOnly):
    return lambda a: _write(a[:, -1], W_O) @ model.W_U
