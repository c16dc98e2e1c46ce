"""Toy tasks (seconds to learn on a CPU) for the zoo models, and a minimal training loop.

* ``sign_xor(n)``: x ~ N(0, 1)^d_in; label 1 if x_0 * x_1 > 0 else 0 (needs a non-linearity).
* ``first_token(n, n_ctx, d_vocab)``: random tokens; label = the first token (needs attention from the
  last position to position 0).
"""

from __future__ import annotations

from typing import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

Task = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]


def sign_xor(d_in: int = 4) -> Task:
    """Batches ``(x, y)``: ``x`` (n, d_in) standard normal, ``y = [x_0 x_1 > 0]``."""
    if d_in < 2:
        raise ValueError(f"sign_xor needs d_in >= 2, got {d_in}")

    def make(n: int, gen: torch.Generator) -> tuple[Float[Tensor, "n d_in"], Int[Tensor, " n"]]:
        x = torch.randn(n, d_in, generator=gen)
        return x, (x[:, 0] * x[:, 1] > 0).long()

    return make


def first_token(n_ctx: int = 4, d_vocab: int = 5) -> Task:
    """Batches ``(tokens, y)``: tokens (n, n_ctx) uniform in ``[0, d_vocab)``, ``y = tokens[:, 0]``."""
    if n_ctx < 2 or d_vocab < 2:
        raise ValueError(f"first_token needs n_ctx >= 2 and d_vocab >= 2, got {(n_ctx, d_vocab)}")

    def make(n: int, gen: torch.Generator) -> tuple[Int[Tensor, "n n_ctx"], Int[Tensor, " n"]]:
        tokens = torch.randint(0, d_vocab, (n, n_ctx), generator=gen)
        return tokens, tokens[:, 0].clone()

    return make


def fit(model: nn.Module, task: Task, steps: int = 300, lr: float = 1e-2, batch: int = 256, seed: int = 0) -> float:
    """Train ``model`` with Adam on cross-entropy for ``steps`` batches; return accuracy on a fresh batch.

    Inputs follow the model's device (and dtype, for float inputs).
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype

    def put(x: Tensor) -> Tensor:
        return x.to(device, dtype) if x.is_floating_point() else x.to(device)

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x, y = task(batch, gen)
        loss = nn.functional.cross_entropy(model(put(x)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = task(2048, gen)
    with torch.no_grad():
        return float((model(put(x)).argmax(-1).cpu() == y).float().mean())
