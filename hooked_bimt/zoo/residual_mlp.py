"""``HookedResidualMLP``: an MLP whose blocks each read the sum of every earlier output.

The residual stream is the input embedding plus the outputs of all earlier blocks::

    e      = W_E x + b_E                                   hook_embed      (batch, d_model)
    r_k    = e + sum_{j<k} W_out_j p_j                     (the stream block k reads)
    z_k    = W_in_k r_k + b_in_k                           blocks.{k}.hook_pre  (batch, d_hidden)
    p_k    = act(z_k)                                      blocks.{k}.hook_post (batch, d_hidden)
    o_k    = W_out_k p_k                                   blocks.{k}.hook_out  (batch, d_model)
    logits = W_U (e + sum_k o_k) + b_U                     hook_logits     (batch, d_out)

Circuit graph (``circuit_graph``): the nodes are *neurons* (residual dimensions of ``hook_embed``,
hidden neurons of ``hook_pre``/``hook_post``, classes of ``hook_logits``; all on the last axis). Block k's
receiver ``blocks.{k}.hook_pre`` is fed by ``hook_embed`` through ``W_in_k`` and by every earlier block's
``hook_post`` through ``W_in_k W_out_j``; the logits by ``hook_embed`` through ``W_U`` and by every
block's ``hook_post`` through ``W_U W_out_j``. Each connection carries its dense ``weight``.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from hooked_bimt._compat import HookedRootModule, HookPoint
from hooked_bimt.model import ACTIVATIONS


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _ResidualBlock(nn.Module):
    """One block: read matrix ``W_in`` (a Linear), write matrix ``W_out`` (no bias), three hook points."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.W_in = nn.Linear(d_model, d_hidden)
        self.W_out = nn.Linear(d_hidden, d_model, bias=False)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.hook_out = HookPoint()


class HookedResidualMLP(HookedRootModule):
    """A residual MLP ``d_in -> (n_blocks blocks of width d_hidden on a d_model stream) -> d_out``.

    Args:
        d_in: input features (inputs are flattened to ``(batch, d_in)``).
        d_hidden: neurons per block.
        n_blocks: number of blocks.
        d_out: number of logits.
        d_model: residual-stream width (default ``d_hidden``).
        activation: one of ``hooked_bimt.model.ACTIVATIONS`` (default ``"relu"``).
    """

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        n_blocks: int,
        d_out: int,
        d_model: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.d_in = _positive_int("d_in", d_in)
        self.d_hidden = _positive_int("d_hidden", d_hidden)
        self.n_blocks = _positive_int("n_blocks", n_blocks)
        self.d_out = _positive_int("d_out", d_out)
        self.d_model = _positive_int("d_model", d_model if d_model is not None else d_hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.W_E = nn.Linear(self.d_in, self.d_model)
        self.blocks = nn.ModuleList(_ResidualBlock(self.d_model, self.d_hidden) for _ in range(self.n_blocks))
        self.W_U = nn.Linear(self.d_model, self.d_out)
        self.hook_in = HookPoint()
        self.hook_embed = HookPoint()
        self.hook_logits = HookPoint()
        self.setup()

    @property
    def device(self) -> torch.device:
        return self.W_E.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.weight.dtype

    def config(self) -> dict[str, Any]:
        """What ``HookedResidualMLP(**config)`` needs to rebuild this architecture."""
        return {"d_in": self.d_in, "d_hidden": self.d_hidden, "n_blocks": self.n_blocks, "d_out": self.d_out,
                "d_model": self.d_model, "activation": self.activation}

    def check_input(self, x: Tensor) -> Float[Tensor, "batch d_in"]:
        """Flatten ``x`` to ``(batch, d_in)`` in the model's dtype, or raise a clear error."""
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"input must be batched, shape (batch, {self.d_in}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {x.dtype}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.d_in:
            raise ValueError(f"input has {x.shape[1]} features per example, the model expects d_in={self.d_in}")
        return x.to(self.dtype)

    def forward(self, x: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch d_out"]:
        act = ACTIVATIONS[self.activation]
        resid = self.hook_embed(self.W_E(self.hook_in(self.check_input(x))))
        for block in self.blocks:
            post = block.hook_post(act(block.hook_pre(block.W_in(resid))))
            resid = resid + block.hook_out(block.W_out(post))
        return self.hook_logits(self.W_U(resid))

    def circuit_graph(self):
        """Neuron-level graph: every block reads the embedding and every earlier block (see module doc)."""
        from circuits.graph import Connection, Graph, Nodes

        nodes = {"hook_embed": Nodes("hook_embed", self.d_model), "hook_logits": Nodes("hook_logits", self.d_out)}
        node_output: dict[str, str] = {}
        for k in range(self.n_blocks):
            pre, post = f"blocks.{k}.hook_pre", f"blocks.{k}.hook_post"
            nodes[pre], nodes[post] = Nodes(pre, self.d_hidden), Nodes(post, self.d_hidden)
            node_output[pre] = post
        readers = [(f"blocks.{k}.hook_pre", b.W_in.weight) for k, b in enumerate(self.blocks)]
        readers.append(("hook_logits", self.W_U.weight))
        conns = []
        for k, (receiver, _) in enumerate(readers):
            reader = readers[k][1]
            conns.append(_connection(Connection, "hook_embed", receiver, lambda r=reader: r))
            for j in range(k):
                writer = self.blocks[j].W_out.weight
                conns.append(_connection(Connection, f"blocks.{j}.hook_post", receiver,
                                         lambda r=reader, w=writer: r @ w))
        act = ACTIVATIONS[self.activation]  # a_post = act(z_pre), declared for engines that propagate changes
        return Graph(nodes=nodes, connections=tuple(conns), output="hook_logits", node_output=node_output,
                     activations={pre: act for pre in node_output})


def _connection(cls: type, sender: str, receiver: str, weight) -> Any:
    """A connection whose contribution is ``a @ weight().T`` (weight recomputed, so it tracks training)."""
    return cls(sender=sender, receiver=receiver, contribute=lambda a: a @ weight().T, weight=weight)
