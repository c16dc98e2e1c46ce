"""What a picture of a BIMT transformer draws, shared by the static figure, the locality number and the viewer.

Rows, bottom to top (the original notebook's figure, ``incontext_3.4``): input tokens, the residual stream after
the embedding, then per block the attention's head dimensions (q/k/v outputs = output-map inputs, head h the
contiguous block ``h*d_head .. (h+1)*d_head``), the residual stream, the MLP neurons, the residual stream; last the
output tokens. Every neuron sits at its SPEC 8 coordinate on its row (``PenalisedMap.x_in`` / ``x_out``), so a
local network shows as short, near-vertical lines.

A penalised map's weights are drawn as its *effective* weights (a map reading a LayerNorm's output times that
norm's weight, as the original plot), the q/k/v map folded onto the head row as |W_q| + |W_k| + |W_v| (the three
folds share their coordinates). A weight's *strength* is ``a = |w| / max |w|`` of its map: the line's opacity and
width, and its weight in the wiring length (``locality``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hooked_bimt.transformer.geometry import PenalisedMap, dims, penalised_maps
from hooked_bimt.transformer.llama import is_llama


def rows_of(n_layer: int) -> dict[str, int]:
    """Row index of every neuron line: ``vocab_in``, ``res0``, per block ``attn{l}``, ``mid{l}``, ``mlp{l}``,
    ``res{l+1}``, and ``vocab_out``."""
    rows = {"vocab_in": 0, "res0": 1}
    for l in range(n_layer):
        base = 1 + 4 * l
        rows.update({f"attn{l}": base + 1, f"mid{l}": base + 2, f"mlp{l}": base + 3, f"res{l + 1}": base + 4})
    rows["vocab_out"] = 2 + 4 * n_layer
    return rows


def map_rows(n_layer: int) -> dict[str, tuple[str, str]]:
    """(sender row, receiver row) of every penalised map."""
    out = {"embed": ("vocab_in", "res0"), "unembed": (f"res{n_layer}", "vocab_out")}
    for l in range(n_layer):
        out.update({f"blocks.{l}.attn.qkv": (f"res{l}", f"attn{l}"), f"blocks.{l}.attn.out": (f"attn{l}", f"mid{l}"),
                    f"blocks.{l}.mlp.in": (f"mid{l}", f"mlp{l}"), f"blocks.{l}.mlp.out": (f"mlp{l}", f"res{l + 1}")})
    return out


def _reads_after_norm(module: Any, name: str) -> Any:
    """The LayerNorm whose output a map reads (q/k/v: ln_1, MLP in: ln_2, unembedding: ln_f), else None."""
    parts = name.split(".")
    if name == "unembed":
        return module.transformer.ln_f
    if name.endswith("attn.qkv") or name.endswith("mlp.in"):
        block = module.transformer.h[int(parts[1])]
        return block.ln_1 if parts[2] == "attn" else block.ln_2
    return None


def drawn_weights(module: Any, m: PenalisedMap) -> np.ndarray:
    """The map's weights as drawn, (out x in) float64: times the LayerNorm weight of the stream it reads, q/k/v
    folded to (d_model x d_model) as |W_q| + |W_k| + |W_v|."""
    w = m.out_in().detach().double()
    norm = _reads_after_norm(module, m.name)
    if norm is not None:
        w = w * norm.weight.detach().double()[None, :]
    w = w.cpu().numpy()
    if m.name.endswith("qkv"):
        return np.abs(w).reshape(3, w.shape[0] // 3, -1).sum(0)
    return w


@dataclass(frozen=True)
class DrawnMap:
    """One map as drawn: its rows, the coordinates of its two sides (float64) and its drawn weights (out x in)."""

    name: str
    sender_row: str
    receiver_row: str
    x_in: np.ndarray
    x_out: np.ndarray
    weights: np.ndarray

    @property
    def signed(self) -> bool:
        """Whether the sign means anything (not the folded q/k/v map)."""
        return not self.name.endswith("qkv")

    def strengths(self) -> np.ndarray:
        """a = |w| / max |w| (0 everywhere for an all-zero map)."""
        w = np.abs(self.weights)
        top = w.max()
        return w / top if top > 0 else np.zeros_like(w)

    def visible(self, min_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lines drawn: receiver j, sender i, strength a (>= ``min_weight``, > 0) and sign (+1, -1; 0 for the
        unsigned q/k/v map) of each."""
        a = self.strengths()
        j, i = np.nonzero((a >= min_weight) & (a > 0))
        sign = np.sign(self.weights[j, i]).astype(np.int64) if self.signed else np.zeros(len(j), dtype=np.int64)
        return j, i, a[j, i], sign

    def lengths(self) -> np.ndarray:
        """|x_out[j] - x_in[i]|: the horizontal length of each line (out x in)."""
        return np.abs(self.x_out[:, None] - self.x_in[None, :])


def drawn_maps(module: Any) -> list[DrawnMap]:
    """Every penalised map as drawn, in forward order (embedding, per block q/k/v, out, MLP in, MLP out, W_U)."""
    if is_llama(module):
        raise NotImplementedError("the BIMT transformer pictures (figure, locality, viewer) are GPT-2 only for now")
    d = dims(module)
    rows = map_rows(d["n_layer"])
    out = []
    for m in penalised_maps(module):
        x_out = m.x_out.detach().cpu().double().numpy()
        if m.name.endswith("qkv"):
            x_out = x_out[: d["d_model"]]  # the three folds share their coordinates
        out.append(DrawnMap(m.name, *rows[m.name], m.x_in.detach().cpu().double().numpy(), x_out,
                            drawn_weights(module, m)))
    return out


def row_coordinates(module: Any) -> dict[str, np.ndarray]:
    """Each row's neuron coordinates, read off the penalised maps that touch it."""
    coords: dict[str, np.ndarray] = {}
    for m in drawn_maps(module):
        coords.setdefault(m.sender_row, m.x_in)
        coords.setdefault(m.receiver_row, m.x_out)
    return coords


def row_label(name: str) -> str:
    """"tokens in", "residual", "heads 0", "MLP 1", "tokens out"."""
    if name.startswith("vocab"):
        return "tokens " + name[len("vocab_"):]
    if name.startswith(("res", "mid")):
        return "residual"
    return f"heads {name[4:]}" if name.startswith("attn") else f"MLP {name[3:]}"
