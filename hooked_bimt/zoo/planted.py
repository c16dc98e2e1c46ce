"""Planted ground-truth models: the three zoo families built so their true circuit is known.

Each builder returns a ``circuits.planted.PlantedCircuit(model, clean, corrupted, true_edges, metric)``;
the construction (signal chains, ``eps`` distractors, identical inputs, dead edges) is described in
``circuits.planted``, whose ``removal_effects`` checks the claim edge by edge.
"""

from __future__ import annotations

from typing import Any, Iterable, Union

import torch
from torch import Tensor

from circuits.graph import Edge
from circuits.planted import PlantedCircuit
from hooked_bimt.model import HookedMLP
from hooked_bimt.zoo.attn_only import HookedAttnOnly
from hooked_bimt.zoo.residual_mlp import HookedResidualMLP


def _features(n_batch: int, n_signal: int, n_distract: int, n_const: int, gen: torch.Generator,
              dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Clean/corrupted inputs: signal and distractor columns drawn independently, constant columns shared."""
    def draw(k: int) -> Tensor:
        return torch.randn(n_batch, k, generator=gen, dtype=torch.float64)

    const = draw(n_const)
    clean = torch.cat([draw(n_signal), draw(n_distract), const], 1)
    corrupted = torch.cat([draw(n_signal), draw(n_distract), const], 1)
    return clean.to(dtype), corrupted.to(dtype)


def _chains(first: str, paths: Iterable[int]) -> set[Edge]:
    """The planted three-edge signal chains: first[p] -> block 0 neuron p -> block 1 neuron p -> logit p."""
    return {e for p in paths for e in (Edge(first, p, "blocks.0.hook_pre", p),
                                       Edge("blocks.0.hook_post", p, "blocks.1.hook_pre", p),
                                       Edge("blocks.1.hook_post", p, "hook_logits", p))}


def _finish(model: Any, clean: Tensor, corrupted: Tensor, true: set[Edge], device: Any, dtype: torch.dtype
            ) -> PlantedCircuit:
    model = model.to(device=device, dtype=dtype)
    return PlantedCircuit(model, clean.to(device), corrupted.to(device), true, "kl")


def planted_mlp(n_signal: int = 2, n_distract: int = 2, n_const: int = 4, hidden: int = 8, eps: float = 0.01,
                n_batch: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64,
                device: Union[str, torch.device] = "cpu") -> PlantedCircuit:
    """A ``HookedMLP (n_in, hidden, hidden, n_signal + 1)``, SiLU, with ``n_signal`` planted chains
    ``hook_in[p] -> blocks.0.hook_pre[p]``, ``blocks.0.hook_post[p] -> blocks.1.hook_pre[p]``,
    ``blocks.1.hook_post[p] -> hook_logits[p]``. Hidden neurons ``n_signal .. n_signal+n_distract-1``
    carry the distractor features with an ``eps`` weight into the signal neurons and the logits; the
    remaining hidden neurons read only the constant features."""
    S, D = n_signal, n_distract
    if min(S, D, n_const) < 1 or hidden < S + D + 1:
        raise ValueError(f"need n_signal, n_distract, n_const >= 1 and hidden >= n_signal + n_distract + 1, got "
                         f"{(n_signal, n_distract, n_const, hidden)}")
    gen = torch.Generator().manual_seed(seed)
    n_in, n_out = S + D + n_const, S + 1
    model = HookedMLP((n_in, hidden, hidden, n_out), activation="silu").to(torch.float64)
    W1, W2, W3 = (torch.zeros_like(lin.weight) for lin in model.linears)
    sig, dis, rest = range(S), range(S, S + D), range(S + D, hidden)
    const_in = range(S + D, n_in)
    sign = lambda: 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0  # noqa: E731
    for p in sig:
        W1[p, p] = 1.5 * sign()
        W2[p, p] = 1.5 * sign()
        W3[p, p] = 2.0 * sign()
        W2[p, list(dis)] = eps                                           # distractor -> signal neuron
        W1[p, list(const_in)] = 0.3 * torch.randn(n_const, generator=gen, dtype=torch.float64)
    for q in dis:
        W1[q, S + (q - S)] = 1.0
        W2[q, q] = 1.0
        W3[:S, q] = eps                                                  # distractor -> logits
    for r in rest:
        W1[r, list(const_in)] = torch.randn(n_const, generator=gen, dtype=torch.float64)
        W2[r, list(rest)] = torch.randn(len(rest), generator=gen, dtype=torch.float64) / len(rest)
        W2[list(sig), r] = 0.3 * torch.randn(S, generator=gen, dtype=torch.float64)
        W3[:, r] = torch.randn(n_out, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for lin, W in zip(model.linears, (W1, W2, W3)):
            lin.weight.copy_(W)
            lin.bias.copy_(0.5 * torch.randn(lin.bias.shape, generator=gen, dtype=torch.float64))
    clean, corrupted = _features(n_batch, S, D, n_const, gen, dtype)
    return _finish(model, clean, corrupted, _chains("hook_in", sig), device, dtype)


def planted_residual_mlp(n_signal: int = 2, n_distract: int = 1, n_const: int = 3, eps: float = 0.01,
                         n_batch: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64,
                         device: Union[str, torch.device] = "cpu") -> PlantedCircuit:
    """A 2-block ``HookedResidualMLP``: the embedding copies the input into the first ``n_in`` residual
    dimensions; block 0's neuron p reads input p and writes dimension A_p; block 1's neuron p reads A_p
    and writes B_p; logit p reads B_p. Block-0 distractor neurons read the distractor features and write
    ``eps`` into every A_p; one more neuron per block reads only constant dimensions."""
    S, D, C = n_signal, n_distract, n_const
    if min(S, D, C) < 1:
        raise ValueError(f"need n_signal, n_distract, n_const >= 1, got {(S, D, C)}")
    gen = torch.Generator().manual_seed(seed)
    n_in, d_hidden = S + D + C, S + D + 1
    A, B = range(n_in, n_in + S), range(n_in + S, n_in + 2 * S)
    d_model = n_in + 2 * S
    model = HookedResidualMLP(n_in, d_hidden, 2, S + 1, d_model=d_model, activation="silu").to(torch.float64)
    rnd = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    W_E = torch.zeros(d_model, n_in, dtype=torch.float64)
    W_E[:n_in, :n_in] = torch.eye(n_in)
    Win0, Wout0 = torch.zeros(d_hidden, d_model, dtype=torch.float64), torch.zeros(d_model, d_hidden, dtype=torch.float64)
    Win1, Wout1 = torch.zeros_like(Win0), torch.zeros_like(Wout0)
    W_U = torch.zeros(S + 1, d_model, dtype=torch.float64)
    const = list(range(S + D, n_in))
    for p in range(S):
        Win0[p, p] = 1.5
        Wout0[A[p], p] = 1.0
        Win1[p, A[p]] = 1.5
        Wout1[B[p], p] = 1.0
        W_U[p, B[p]] = 2.0
        Win0[p, const] = 0.3 * rnd(C)
    for q in range(S, S + D):
        Win0[q, q] = 1.0
        Wout0[list(A), q] = eps
    last = d_hidden - 1
    Win0[last, const], Win1[last, const] = rnd(C), rnd(C)
    Wout1[const[0], last] = 1.0                  # writes a constant-only direction the logits read
    W_U[:, const[0]] = rnd(S + 1)
    with torch.no_grad():
        model.W_E.weight.copy_(W_E)
        model.W_E.bias.zero_()
        for block, (Wi, Wo) in zip(model.blocks, ((Win0, Wout0), (Win1, Wout1))):
            block.W_in.weight.copy_(Wi)
            block.W_in.bias.copy_(0.5 * rnd(d_hidden))
            block.W_out.weight.copy_(Wo)
        model.W_U.weight.copy_(W_U)
        model.W_U.bias.copy_(0.5 * rnd(S + 1))
    clean, corrupted = _features(n_batch, S, D, C, gen, dtype)
    return _finish(model, clean, corrupted, _chains("hook_embed", range(S)), device, dtype)


def planted_attn_only(d_vocab: int = 4, n_ctx: int = 3, eps: float = 0.01, scale: float = 4.0,
                      n_batch: int = 64, seed: int = 0, dtype: torch.dtype = torch.float64,
                      device: Union[str, torch.device] = "cpu") -> PlantedCircuit:
    """A 2-layer, 2-head ``HookedAttnOnly`` that predicts the FIRST token from the last position.

    Residual dimensions: token one-hots T, position one-hots P, a "moved" block M and an output block U
    (``d_vocab`` each except P). Every head's query and key read only P, so attention patterns do not depend
    on the tokens: layer-0 heads attend from the last position to position 0, layer-1 heads to the last
    position itself. L0H0 copies T -> M, L1H0 copies M -> U, the unembedding reads U. L0H1 and L1H1 are
    distractors writing ``eps`` times the same. Clean and corrupted batches differ only in token 0 (always
    a different token); later tokens are identical. True circuit: ``hook_embed -> blocks.0.hook_v_input[0]``,
    ``blocks.0.attn.hook_z[0] -> blocks.1.hook_v_input[0]``, ``blocks.1.attn.hook_z[0] -> hook_logits``.
    """
    if d_vocab < 2 or n_ctx < 2:
        raise ValueError(f"need d_vocab >= 2 and n_ctx >= 2, got {(d_vocab, n_ctx)}")
    gen = torch.Generator().manual_seed(seed)
    V = d_vocab
    T, P = list(range(V)), list(range(V, V + n_ctx))
    M, U = list(range(V + n_ctx, 2 * V + n_ctx)), list(range(2 * V + n_ctx, 3 * V + n_ctx))
    model = HookedAttnOnly(n_layers=2, n_heads=2, d_model=3 * V + n_ctx, d_head=V, n_ctx=n_ctx, d_vocab=V)
    model = model.to(torch.float64)
    sharp = 40.0 * V ** 0.5                      # query . key scale: softmax is one-hot to ~1e-17
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E[:, T] = torch.eye(V, dtype=torch.float64)
        model.W_pos[:, P] = torch.eye(n_ctx, dtype=torch.float64)
        for layer, target in ((0, 0), (1, n_ctx - 1)):
            attn = model.blocks[layer].attn
            src, dst = (T, M) if layer == 0 else (M, U)
            for h, strength in ((0, 1.0), (1, eps)):
                attn.W_Q[h, P, 0] = sharp             # every query position asks for feature 0 ...
                attn.W_K[h, P[target], 0] = 1.0       # ... which only the target position's key has
                attn.W_V[h, src, :] = torch.eye(V, dtype=torch.float64)
                attn.W_O[h, :, dst] = strength * torch.eye(V, dtype=torch.float64)
        model.W_U[U, :] = scale * torch.eye(V, dtype=torch.float64)
    rest = torch.randint(0, V, (n_batch, n_ctx - 1), generator=gen)
    first = torch.randint(0, V, (n_batch,), generator=gen)
    other = (first + torch.randint(1, V, (n_batch,), generator=gen)) % V
    clean = torch.cat([first[:, None], rest], 1)
    corrupted = torch.cat([other[:, None], rest], 1)
    true = {Edge("hook_embed", 0, "blocks.0.hook_v_input", 0), Edge("blocks.0.attn.hook_z", 0, "blocks.1.hook_v_input", 0),
            Edge("blocks.1.attn.hook_z", 0, "hook_logits", 0)}
    model = model.to(device=device, dtype=dtype)
    return PlantedCircuit(model, clean.to(device), corrupted.to(device), true, "kl")


FAMILIES = {"mlp": planted_mlp, "residual_mlp": planted_residual_mlp, "attn_only": planted_attn_only}
