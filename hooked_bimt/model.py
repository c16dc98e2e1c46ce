"""``HookedMLP``: a BIMT multilayer perceptron as a TransformerLens ``HookedRootModule``.

Hook points, in firing order (layer 0 is the input, layer L the logits)::

    hook_in                  the flattened input (layer 0)
    blocks.{k}.hook_pre      pre-activation of hidden layer k+1   (k = 0 .. L-2)
    blocks.{k}.hook_post     post-activation of hidden layer k+1
    hook_logits              output of the last linear layer

``linears[k]`` maps layer k to layer k+1. Every neuron has a position in the plane (buffers
``coords_0 .. coords_L``, see ``geometry``), so ``.to(device)`` / ``.double()`` carry the geometry
along. Hidden-neuron swaps permute weights (``swap_neurons``); input and output neurons keep their
index (pixel, class) and swap *positions* instead, recorded in the integer buffers ``in_perm`` and
``out_perm`` (``out_perm[c]`` is the ring slot of class c), so logits stay in class order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from hooked_bimt._compat import HookedRootModule, HookPoint
from hooked_bimt.checkpoint import load_model, save_model
from hooked_bimt.geometry import Layout, network_coords

if TYPE_CHECKING:
    from torch.optim import Optimizer

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": nn.functional.silu,
    "relu": nn.functional.relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


class _Block(nn.Module):
    """Holds the two hook points of one hidden layer, so their names read ``blocks.{k}.hook_*``."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 2:
        raise ValueError(f"widths needs at least an input and an output width, got {widths!r}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"every width must be a positive integer, got {widths!r}")
    return widths


class HookedMLP(HookedRootModule):
    """A fully connected network ``widths[0] -> ... -> widths[-1]`` with TransformerLens hook points.

    Args:
        widths: layer widths, input first, e.g. ``(784, 100, 100, 10)``.
        activation: one of ``ACTIVATIONS`` (default SiLU, as in BIMT).
        layouts: per-layer placement ("auto", "grid", "line", "ring"); default: "auto" everywhere and a
            ring for the output. "grid" on a non-square width raises ``ValueError``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (784, 100, 100, 10),
        activation: str = "silu",
        layouts: Sequence[Layout] | None = None,
    ) -> None:
        super().__init__()
        self.widths = _check_widths(widths)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.layouts = tuple(layouts) if layouts is not None else None
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.widths[:-1], self.widths[1:]))
        self.hook_in = HookPoint()
        self.blocks = nn.ModuleList(_Block() for _ in range(len(self.widths) - 2))
        self.hook_logits = HookPoint()
        for layer, c in enumerate(network_coords(self.widths, layouts)):
            self.register_buffer(f"coords_{layer}", c.to(torch.get_default_dtype()))
        self.register_buffer("in_perm", torch.arange(self.widths[0]))
        self.register_buffer("out_perm", torch.arange(self.widths[-1]))
        self.setup()

    # ------------------------------------------------------------------ structure
    @property
    def n_layers(self) -> int:
        """Number of linear layers L (the network has L + 1 layers of neurons)."""
        return len(self.linears)

    def coords(self, layer: int) -> Float[Tensor, "n 2"]:
        """Positions of the neurons of ``layer`` (0 = input, L = output)."""
        return getattr(self, f"coords_{layer}")

    def layer_hook(self, layer: int, role: str = "post") -> str:
        """Hook name of a layer of neurons: as sender (``role="post"``) or receiver (``role="pre"``)."""
        if layer == 0:
            return "hook_in"
        if layer == self.n_layers:
            return "hook_logits"
        if not 0 < layer < self.n_layers:
            raise ValueError(f"layer must be in 0..{self.n_layers}, got {layer}")
        return f"blocks.{layer - 1}.hook_{role}"

    @property
    def device(self) -> torch.device:
        return self.linears[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.linears[0].weight.dtype

    # ------------------------------------------------------------------ forward
    def check_input(self, x: Tensor) -> Float[Tensor, "batch d_in"]:
        """Flatten ``x`` to ``(batch, widths[0])`` in the model's dtype, or raise ``ValueError``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"input must be batched, shape (batch, {self.widths[0]}), got {tuple(x.shape)}")
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.widths[0]:
            raise ValueError(
                f"input has {x.shape[1]} features per example, the model expects {self.widths[0]} "
                f"(widths={self.widths})"
            )
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got {x.dtype}")
        if torch.isnan(x).any():
            raise ValueError("input contains NaN")
        return x.to(self.dtype)

    def forward(self, x: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch d_out"]:
        act = ACTIVATIONS[self.activation]
        h = self.hook_in(self.check_input(x))
        for k, block in enumerate(self.blocks):
            h = block.hook_post(act(block.hook_pre(self.linears[k](h))))
        return self.hook_logits(self.linears[-1](h))

    # ------------------------------------------------------------------ BIMT operations
    def permute_neurons(self, block: int, perm: Tensor, optimizer: "Optimizer | None" = None) -> None:
        """Reorder the hidden layer of ``blocks.{block}``: new neuron p is old neuron ``perm[p]``.

        Rows of the incoming weight and bias, columns of the outgoing weight, and every optimizer
        state tensor shaped like those parameters (AdamW's moments) move together, so the network
        computes exactly the same function and training continues as if nothing happened.
        """
        if not 0 <= block < len(self.blocks):
            raise ValueError(f"block must be in 0..{len(self.blocks) - 1}, got {block}")
        n = self.widths[block + 1]
        perm = torch.as_tensor(perm, device=self.device, dtype=torch.long)
        if perm.shape != (n,) or not torch.equal(perm.sort().values, torch.arange(n, device=self.device)):
            raise ValueError(f"perm must be a permutation of range({n})")
        inc, out = self.linears[block], self.linears[block + 1]
        moves = [(inc.weight, 0), (inc.bias, 0), (out.weight, 1)]
        with torch.no_grad():
            for param, dim in moves:
                param.copy_(param.index_select(dim, perm))
                if optimizer is not None:
                    for value in optimizer.state.get(param, {}).values():
                        if isinstance(value, Tensor) and value.shape == param.shape:
                            value.copy_(value.index_select(dim, perm))

    def swap_neurons(self, block: int, j: int, k: int, optimizer: "Optimizer | None" = None) -> None:
        """Swap hidden neurons ``j`` and ``k`` of ``blocks.{block}`` (weights, bias, optimizer state)."""
        n = self.widths[block + 1] if 0 <= block < len(self.blocks) else 0
        if not (0 <= j < n and 0 <= k < n):
            raise ValueError(f"neurons {j}, {k} out of range for block {block} of width {n}")
        if j == k:
            return
        # Exchange the two slices in place: a full permute_neurons would copy every whole tensor.
        inc, out = self.linears[block], self.linears[block + 1]
        idx = torch.tensor([j, k], device=self.device)
        rev = torch.tensor([k, j], device=self.device)
        with torch.no_grad():
            for param, dim in [(inc.weight, 0), (inc.bias, 0), (out.weight, 1)]:
                tensors = [param]
                if optimizer is not None:
                    state = optimizer.state.get(param, {}).values()
                    tensors += [v for v in state if isinstance(v, Tensor) and v.shape == param.shape]
                for t in tensors:
                    t.index_copy_(dim, idx, t.index_select(dim, rev))

    def swap_positions(self, layer: int, j: int, k: int) -> None:
        """Swap the positions of neurons ``j`` and ``k`` of the input (0) or output (L) layer."""
        if layer not in (0, self.n_layers):
            raise ValueError("swap_positions is for the input (0) and output (L) layers; use swap_neurons")
        perm = self.in_perm if layer == 0 else self.out_perm
        c = self.coords(layer)
        with torch.no_grad():
            c[[j, k]] = c[[k, j]]
            perm[[j, k]] = perm[[k, j]]

    def connection_cost(self, distance_factor: float | Sequence[float] = 2.0, y_star: float = 0.5) -> Tensor:
        """The BIMT connection cost of this network (see ``hooked_bimt.cost.connection_cost``)."""
        from hooked_bimt.cost import connection_cost

        return connection_cost(self, distance_factor=distance_factor, y_star=y_star)

    def relocate(self, *args: Any, **kwargs: Any) -> int:
        """Greedy, cost-lowering neuron swaps (see ``hooked_bimt.swaps.relocate``); returns the swap count."""
        from hooked_bimt.swaps import relocate

        return relocate(self, *args, **kwargs)

    def circuit_graph(self):
        """The circuit-discovery graph: neuron -> neuron edges, ``W_k[j, i] * a_k[i]`` (``circuits.graph``)."""
        from circuits.graph import mlp_graph

        return mlp_graph(self, activation=ACTIVATIONS[self.activation])

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict[str, Any]:
        """What ``HookedMLP(**config)`` needs to rebuild this architecture."""
        return {
            "widths": list(self.widths),
            "activation": self.activation,
            "layouts": list(self.layouts) if self.layouts is not None else None,
        }

    def save(self, directory: str | Path, **metadata: Any) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` atomically; see ``checkpoint``."""
        return save_model(self, directory, **metadata)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> "HookedMLP":
        """Rebuild a model written by ``save``; clear errors for a missing, corrupt or mismatched file."""
        return load_model(directory, cls, device=device)
