"""What a picture of a BIMT transformer draws, shared by the static figure, the locality number and the viewer.

Rows, bottom to top (the original notebook's figure, ``incontext_3.4``): input tokens, the residual stream after
the embedding, then per block the attention's head dimensions (q/k/v outputs = output-map inputs, head h the
contiguous block ``h*d_head .. (h+1)*d_head``), the residual stream, the MLP neurons, the residual stream; last the
output tokens. Every neuron sits at its SPEC 8 coordinate on its row (``PenalisedMap.x_in`` / ``x_out``), so a
local network shows as short, near-vertical lines.

A penalised map's weights are drawn as its *effective* weights (a map reading a LayerNorm's output times that
norm's weight, as the original plot), the q/k/v map folded onto the head row as |W_q| + |W_k| + |W_v| (the three
folds share their coordinates). A weight's *strength* is ``a = |w| / max |w|`` of its drawn map: the line's
opacity and width, and its weight in the wiring length (``locality``).

Llama-style modules (``llama``: RMSNorm, gated MLP, grouped-query attention) are drawn at ``llama``'s coordinates,
each penalised weight once, where the cost measures it:
- the head row holds the query dimensions (q outputs = o inputs, grouped by head), written by W_q alone (signed);
- a key/value row half-way below it holds the ``n_kv * d_head`` key/value dimensions (group g under the query heads
  that read it), written by |W_k| + |W_v| (k and v share their coordinates, as GPT-2's folds); it ends there, as
  keys and values reach a head's output only through the attention pattern;
- the MLP row's neurons are written by |W_gate| + |W_up| (both write the same neurons: the neuron reads the stream
  through both), unsigned like GPT-2's q/k/v;
- maps reading an RMSNorm's output are drawn times its weight. Without grouping (``n_kv == n_head``) the key/value
  row simply has as many dimensions as the head row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hooked_bimt.transformer.geometry import PenalisedMap, dims, penalised_maps
from hooked_bimt.transformer.llama import is_llama

ALL = slice(None)


def rows_of(n_layer: int, kv_rows: bool = False) -> dict[str, float]:
    """Row (height) of every neuron line: ``vocab_in``, ``res0``, per block ``attn{l}``, ``mid{l}``, ``mlp{l}``,
    ``res{l+1}``, and ``vocab_out``; with ``kv_rows`` (Llama) also ``kv{l}``, half-way below ``attn{l}``."""
    rows: dict[str, float] = {"vocab_in": 0, "res0": 1}
    for l in range(n_layer):
        base = 1 + 4 * l
        rows.update({f"attn{l}": base + 1, f"mid{l}": base + 2, f"mlp{l}": base + 3, f"res{l + 1}": base + 4})
        if kv_rows:
            rows[f"kv{l}"] = base + 0.5
    rows["vocab_out"] = 2 + 4 * n_layer
    return rows


def module_rows(module: Any) -> dict[str, float]:
    """``rows_of`` for this module's architecture (Llama: with its key/value rows)."""
    return rows_of(dims(module)["n_layer"], kv_rows=is_llama(module))


@dataclass(frozen=True)
class DrawnSpec:
    """How one drawn map is made: the (penalised map, its receiver rows) parts summed as |W| (one part: signed),
    its sender and receiver rows, and the norm whose output it reads (None: none)."""

    name: str
    parts: tuple[tuple[PenalisedMap, slice], ...]
    sender_row: str
    receiver_row: str
    norm: Any


def _gpt2_specs(module: Any, maps: dict[str, PenalisedMap], n_layer: int) -> list[DrawnSpec]:
    """GPT-2: the fused q/k/v map folded in three, each LayerNorm's weight on the map that reads it."""
    tr, n = module.transformer, dims(module)["d_model"]
    specs = [DrawnSpec("embed", ((maps["embed"], ALL),), "vocab_in", "res0", None)]
    for l, block in enumerate(tr.h):
        p = f"blocks.{l}."
        qkv = tuple((maps[p + "attn.qkv"], slice(f * n, (f + 1) * n)) for f in range(3))
        specs += [DrawnSpec(p + "attn.qkv", qkv, f"res{l}", f"attn{l}", block.ln_1),
                  DrawnSpec(p + "attn.out", ((maps[p + "attn.out"], ALL),), f"attn{l}", f"mid{l}", None),
                  DrawnSpec(p + "mlp.in", ((maps[p + "mlp.in"], ALL),), f"mid{l}", f"mlp{l}", block.ln_2),
                  DrawnSpec(p + "mlp.out", ((maps[p + "mlp.out"], ALL),), f"mlp{l}", f"res{l + 1}", None)]
    return specs + [DrawnSpec("unembed", ((maps["unembed"], ALL),), f"res{n_layer}", "vocab_out", tr.ln_f)]


def _llama_specs(module: Any, maps: dict[str, PenalisedMap], n_layer: int) -> list[DrawnSpec]:
    """Llama (module docstring): q alone, k and v summed on the key/value row, gate and up summed."""
    inner = module.model
    specs = [DrawnSpec("embed", ((maps["embed"], ALL),), "vocab_in", "res0", None)]
    for l, block in enumerate(inner.layers):
        p = f"blocks.{l}."

        def of(*names: str) -> tuple[tuple[PenalisedMap, slice], ...]:
            return tuple((maps[p + k], ALL) for k in names)

        specs += [DrawnSpec(p + "attn.q", of("attn.q"), f"res{l}", f"attn{l}", block.input_layernorm),
                  DrawnSpec(p + "attn.kv", of("attn.k", "attn.v"), f"res{l}", f"kv{l}", block.input_layernorm),
                  DrawnSpec(p + "attn.out", of("attn.out"), f"attn{l}", f"mid{l}", None),
                  DrawnSpec(p + "mlp.gate_up", of("mlp.gate", "mlp.up"), f"mid{l}", f"mlp{l}",
                            block.post_attention_layernorm),
                  DrawnSpec(p + "mlp.down", of("mlp.down"), f"mlp{l}", f"res{l + 1}", None)]
    return specs + [DrawnSpec("unembed", ((maps["unembed"], ALL),), f"res{n_layer}", "vocab_out", inner.norm)]


def drawn_specs(module: Any) -> list[DrawnSpec]:
    """Every drawn map's recipe, in forward order, for a GPT-2- or Llama-style module."""
    maps = {m.name: m for m in penalised_maps(module)}
    return (_llama_specs if is_llama(module) else _gpt2_specs)(module, maps, dims(module)["n_layer"])


def drawn_weights(spec: DrawnSpec) -> np.ndarray:
    """The map's weights as drawn, (out x in) float64: times the norm weight of the stream it reads; several parts
    (GPT-2's q/k/v folds, Llama's k and v, gate and up) summed as |W|."""
    ws = []
    for m, rows in spec.parts:
        w = m.out_in().detach().double()[rows]
        if spec.norm is not None:
            w = w * spec.norm.weight.detach().double()[None, :]
        ws.append(w.cpu().numpy())
    return ws[0] if len(ws) == 1 else sum(np.abs(w) for w in ws)


@dataclass(frozen=True)
class DrawnMap:
    """One map as drawn: its rows, the coordinates of its two sides (float64), its drawn weights (out x in) and
    whether their sign means anything (not for a sum of |W|)."""

    name: str
    sender_row: str
    receiver_row: str
    x_in: np.ndarray
    x_out: np.ndarray
    weights: np.ndarray
    signed: bool = True

    def strengths(self) -> np.ndarray:
        """a = |w| / max |w| (0 everywhere for an all-zero map)."""
        w = np.abs(self.weights)
        top = w.max()
        return w / top if top > 0 else np.zeros_like(w)

    def visible(self, min_weight: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lines drawn: receiver j, sender i, strength a (>= ``min_weight``, > 0) and sign (+1, -1; 0 for an
        unsigned map) of each."""
        a = self.strengths()
        j, i = np.nonzero((a >= min_weight) & (a > 0))
        sign = np.sign(self.weights[j, i]).astype(np.int64) if self.signed else np.zeros(len(j), dtype=np.int64)
        return j, i, a[j, i], sign

    def lengths(self) -> np.ndarray:
        """|x_out[j] - x_in[i]|: the horizontal length of each line (out x in)."""
        return np.abs(self.x_out[:, None] - self.x_in[None, :])


def drawn_maps(module: Any) -> list[DrawnMap]:
    """Every map as drawn, in forward order (GPT-2: embedding, per block q/k/v, out, MLP in, MLP out, W_U; Llama:
    embedding, per block q, k/v, o, gate/up, down, W_U)."""
    out = []
    for spec in drawn_specs(module):
        (first, rows), *rest = spec.parts
        x_out = first.x_out.detach().cpu().double().numpy()[rows]  # summed parts share their coordinates
        out.append(DrawnMap(spec.name, spec.sender_row, spec.receiver_row, first.x_in.detach().cpu().double().numpy(),
                            x_out, drawn_weights(spec), signed=not rest))
    return out


def row_coordinates(module: Any) -> dict[str, np.ndarray]:
    """Each row's neuron coordinates, read off the drawn maps that touch it."""
    coords: dict[str, np.ndarray] = {}
    for m in drawn_maps(module):
        coords.setdefault(m.sender_row, m.x_in)
        coords.setdefault(m.receiver_row, m.x_out)
    return coords


def heads_per_group(d: dict[str, int]) -> int:
    """Query heads per key/value group (GPT-2, and Llama without grouping: 1). Above 1 the circuit graph's key and
    value inputs are nodes of their own, one per group (``circuits.models.transformer_bridge``)."""
    return d["n_head"] // d.get("n_kv", d["n_head"])


def kv_port_x(group: int, role: str, n_kv: int) -> float:
    """Where a grouped circuit node sits on its key/value row: group ``group``'s key input a quarter of the group's
    stretch from its left end, its value input a quarter from its right end."""
    return (group + (0.25 if role == "k" else 0.75)) / n_kv


def row_label(name: str) -> str:
    """"tokens in", "residual", "heads 0", "keys/values 0", "MLP 1", "tokens out"."""
    if name.startswith("vocab"):
        return "tokens " + name[len("vocab_"):]
    if name.startswith(("res", "mid")):
        return "residual"
    if name.startswith("kv"):
        return f"keys/values {name[2:]}"
    return f"heads {name[4:]}" if name.startswith("attn") else f"MLP {name[3:]}"
