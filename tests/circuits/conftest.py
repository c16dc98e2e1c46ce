"""Small float64 models for the circuit-discovery tests: a HookedMLP and two non-MLP graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from circuits.graph import Connection, Graph, Nodes
from hooked_bimt._compat import HookedRootModule, HookPoint
from hooked_bimt.model import HookedMLP


def make_mlp(seed: int, widths=(5, 4, 3, 3), activation: str = "silu") -> HookedMLP:
    torch.manual_seed(seed)
    model = HookedMLP(widths, activation=activation).double()
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(2.0)
    return model


def sparse_batches(seed: int, batch: int, d_in: int, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean/corrupted inputs equal on ``share`` of the (example, input) entries, as MNIST pairs are on the pixels
    that are background in both images: a candidate sender then moves only some examples."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randn(batch, d_in, generator=g, dtype=torch.float64)
    corrupted = torch.randn(batch, d_in, generator=g, dtype=torch.float64)
    same = torch.rand(batch, d_in, generator=g) < share
    return clean, torch.where(same, clean, corrupted)


def fast_state(model, clean: torch.Tensor, corrupted: torch.Tensor, threshold: float, graph=None):
    """The fast MLP engine's ``State`` of the full circuit (KL, resample ablation; ``graph``: the model's own)."""
    from circuits import graph_of
    from circuits.acdc.mlp.state import State
    from circuits.acdc.loop import Problem
    from circuits.metrics import resolve
    from circuits.patching import corrupted_activations, full_mask

    g = graph_of(model) if graph is None else graph
    return State(Problem(model, g, clean, corrupted_activations(model, corrupted, "resample", g), resolve("kl"),
                         threshold, full_mask(g, clean.device), False))


def kl_with_first_hidden_input(model: HookedMLP, clean: torch.Tensor, full_logits: torch.Tensor, act, neuron: int,
                               z: torch.Tensor) -> float:
    """Whole-batch KL(full || model) by the model's own layers (two hidden), with the input of ``neuron`` of the
    first hidden layer set to ``z``: a plain forward pass, independent of the engines' algebra."""
    with torch.no_grad():
        h = act(model.linears[0](clean))
        h[:, neuron] = act(z)
        logits = model.linears[2](act(model.linears[1](h)))
        logp = torch.log_softmax(full_logits, -1)
        return float((logp.exp() * (logp - torch.log_softmax(logits, -1))).sum(-1).mean())


def make_batches(seed: int, batch: int = 6, d_in: int = 5, shape: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    dims = shape or (d_in,)
    clean = torch.randn(batch, *dims, generator=g, dtype=torch.float64)
    corrupted = torch.randn(batch, *dims, generator=g, dtype=torch.float64)
    if not shape:
        corrupted[:, 0] = clean[:, 0]  # a sender identical in both runs (effect exactly 0)
    return clean, corrupted


class ResidualMLP(HookedRootModule):
    """in -> pre -> tanh -> post -> logits, plus a skip in -> logits: the output has two sender hooks.

    ``with_weight=False`` declares the connections by ``contribute`` only (the generic patching path).
    """

    def __init__(self, d_in: int = 4, d_hidden: int = 3, d_out: int = 3, with_weight: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin1 = nn.Linear(d_in, d_hidden).double()
        self.lin2 = nn.Linear(d_hidden, d_out).double()
        self.skip = nn.Linear(d_in, d_out, bias=False).double()
        self.with_weight = with_weight
        self.hook_in, self.hook_pre, self.hook_post, self.hook_logits = HookPoint(), HookPoint(), HookPoint(), HookPoint()
        self.setup()

    def forward(self, x):
        x = self.hook_in(x)
        h = self.hook_post(torch.tanh(self.hook_pre(self.lin1(x))))
        return self.hook_logits(self.lin2(h) + self.skip(x))

    def circuit_graph(self) -> Graph:
        def conn(s, r, lin):
            w = (lambda: lin.weight) if self.with_weight else None
            return Connection(s, r, lambda a: a @ lin.weight.T, w)

        nodes = {h: Nodes(h, n) for h, n in [("hook_in", self.lin1.in_features), ("hook_pre", self.lin1.out_features),
                                            ("hook_post", self.lin1.out_features), ("hook_logits", self.lin2.out_features)]}
        conns = (conn("hook_in", "hook_pre", self.lin1), conn("hook_in", "hook_logits", self.skip),
                 conn("hook_post", "hook_logits", self.lin2))
        return Graph(nodes, conns, "hook_logits", {"hook_pre": "hook_post"})


class HeadMixer(HookedRootModule):
    """Nodes on a non-last axis: input (batch, heads, d); heads mix, tanh, then one whole-hook output node."""

    def __init__(self, heads: int = 3, d: int = 2, d_out: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mix = nn.Parameter(torch.randn(heads, heads, generator=g, dtype=torch.float64))
        self.v = nn.Parameter(torch.randn(d, d, generator=g, dtype=torch.float64))
        self.o = nn.Parameter(torch.randn(heads, d, d_out, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(d_out, generator=g, dtype=torch.float64))
        self.heads = heads
        self.hook_in, self.hook_z, self.hook_post, self.hook_logits = HookPoint(), HookPoint(), HookPoint(), HookPoint()
        self.setup()

    def _mix(self, a):
        return torch.einsum("bgd,hg,de->bhe", a, self.mix, self.v)

    def _out(self, a):
        return torch.einsum("bhd,hdc->bc", a, self.o)

    def forward(self, x):
        x = self.hook_in(x)
        h = self.hook_post(torch.tanh(self.hook_z(self._mix(x))))
        return self.hook_logits(self._out(h) + self.bias)

    def circuit_graph(self) -> Graph:
        nodes = {"hook_in": Nodes("hook_in", self.heads, axis=1), "hook_z": Nodes("hook_z", self.heads, axis=1),
                 "hook_post": Nodes("hook_post", self.heads, axis=1), "hook_logits": Nodes("hook_logits", 1, axis=None)}
        conns = (Connection("hook_in", "hook_z", self._mix), Connection("hook_post", "hook_logits", self._out))
        return Graph(nodes, conns, "hook_logits", {"hook_z": "hook_post"})


@pytest.fixture
def mlp() -> HookedMLP:
    return make_mlp(0)


@pytest.fixture
def batches() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batches(0)

