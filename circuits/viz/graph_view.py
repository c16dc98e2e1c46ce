"""The circuit view of any model with a circuit graph (transformer bridges, the zoo): units in rows.

Read off ``circuits.graph_of(model)`` alone, so it works for every model the engines support:

- A *unit* is a node of the graph seen as one thing: a sender node ``(hook, i)`` together with the
  receiver nodes whose output it is (``Graph.node_output``): a head is one unit with its q, k and v
  inputs, an MLP one unit with its input. Receivers without an output (the graph's output) are units.
- Rows: the unit's layer, read from ``blocks.{l}`` in its hook name (row ``l + 1``); a hook without a
  block index sits in row 0 when it only sends (the embedding) and in the top row when it only
  receives (the output). A graph whose hooks carry no block index is laid out by longest path instead
  (``row(u) = 1 + max row of the units feeding u``).
- Within a row, units go left to right by hook (in the graph's order) then index; a receiver hook of a
  unit is a *port* on its bottom edge (q, k, v side by side), so edges into q, k and v land apart
  and are coloured by port kind. Width grows with |effect| (uniform for a circuit without effects).

Positions are in a drawing space with y pointing down (SVG), input at the bottom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from circuits.circuit import Circuit
from circuits.graph import Graph
from circuits.viz.placement import Placement, placement_data

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_ROW_GAP, _MARGIN, _SPACING = 150.0, 50.0, 80.0
_MIN_SPACING = 12.0


@dataclass(frozen=True)
class Unit:
    """One drawn node: its sender hook (or the output hook), node index, receiver hooks (its ports), row,
    and ``lift``: how many units of its own row feed it in a chain (an MLP read by its layer's heads is
    drawn a half-step above them)."""

    hook: str
    index: int
    ports: tuple[str, ...]
    row: int
    lift: int = 0


def block_of(hook: str) -> Optional[int]:
    """The ``l`` of ``blocks.{l}.`` in a hook name, else None."""
    m = _BLOCK.search(hook)
    return int(m.group(1)) if m else None


def port_kind(hook: str) -> str:
    """Short name of a receiver hook's role: ``blocks.1.hook_k_input`` -> "k", ``...hook_mlp_in`` -> "mlp_in"."""
    last = hook.rsplit(".", 1)[-1]
    last = last[5:] if last.startswith("hook_") else last
    return last[: -len("_input")] if last.endswith("_input") else last


def _rows(graph: Graph, keys: list[str], ports: dict[str, list[str]]) -> dict[str, int]:
    """Row of each unit hook (a sender hook, or the output): block index + 1, or longest path."""
    blocks = {h: block_of(h) for h in keys}
    inner = [h for h in keys if ports[h] and h != graph.output]  # units that both receive and send
    if inner and all(blocks[h] is not None for h in inner):
        top = max(blocks[h] for h in inner) + 2
        return {h: blocks[h] + 1 if h in inner else (top if h == graph.output else 0) for h in keys}
    row: dict[str, int] = {}
    for receiver in graph.receivers():  # forward order: senders' rows are known before their receivers'
        unit = graph.node_output.get(receiver, receiver)
        feeds = [row.get(c.sender, 0) for c in graph.connections_into(receiver)]
        row[unit] = max(row.get(unit, 0), 1 + max(feeds))
    return {h: row.get(h, 0) for h in keys}


def units_of(graph: Graph) -> tuple[list[Unit], dict[tuple[str, int], int]]:
    """The units in drawing order, and ``(hook, index) -> unit number`` for every node of the graph."""
    owner = dict(graph.node_output)
    keys = list(dict.fromkeys([*graph.senders(), *(r for r in graph.receivers() if r not in owner)]))
    ports: dict[str, list[str]] = {k: [] for k in keys}
    for r in graph.receivers():
        ports[owner.get(r, r)].append(r)
    rows = _rows(graph, keys, ports)
    lift = {h: 0 for h in keys}
    for r in graph.receivers():  # forward order
        unit = owner.get(r, r)
        same_row = [lift[c.sender] + 1 for c in graph.connections_into(r) if rows[c.sender] == rows[unit]]
        lift[unit] = max([lift[unit], *same_row])
    order = sorted(keys, key=lambda h: (rows[h], keys.index(h)))
    units, where = [], {}
    for h in order:
        for i in range(graph.nodes[h].count):
            where[(h, i)] = len(units)
            for p in ports[h]:
                where[(p, i)] = len(units)
            units.append(Unit(h, i, tuple(ports[h]), rows[h], lift[h]))
    return units, where


def unit_label(unit: Unit, n_nodes: int, is_output: bool) -> str:
    """A short label: ``L1H3`` for a head, ``MLP0``, ``L1k0`` for a key group (GQA), ``embed``, ``out``."""
    l = block_of(unit.hook)
    last = unit.hook.rsplit(".", 1)[-1].removeprefix("hook_")
    if is_output:
        return "out" if n_nodes == 1 else f"out{unit.index}"
    if l is not None and unit.ports == (unit.hook,):  # a receiver of its own: a KV group under GQA
        return f"L{l}{port_kind(unit.hook)}{unit.index}"
    if l is not None and (".attn." in unit.hook or last in ("result", "z")):
        return f"L{l}H{unit.index}"
    if l is not None and "mlp" in unit.hook and n_nodes == 1:
        return f"MLP{l}"
    if l is not None:
        return f"L{l}.{unit.index}"
    name = unit.hook.split(".")[0] if last == "out" else last
    return name if n_nodes == 1 else f"{name}{unit.index}"


def row_labels(units: list[Unit], rows: list[int], output: str) -> list[str]:
    """"input", "layer {l}" (from the block index of the row's units) or "row {r}", "output"."""
    labels = []
    for r in rows:
        hooks = [u.hook for u in units if u.row == r]
        blocks = {block_of(h) for h in hooks}
        if output in hooks:
            labels.append("output")
        elif r == 0:
            labels.append("input")
        else:
            labels.append(f"layer {blocks.pop()}" if len(blocks) == 1 and None not in blocks else f"row {r}")
    return labels


def positions(units: list[Unit]) -> tuple[np.ndarray, tuple[float, float], float]:
    """``(n_units, 2)`` centres, the drawing size, and the unit width (rows evenly spread, input at the bottom;
    within a row, a unit ``lift`` steps up is drawn ``0.4 * gap * lift / (1 + max lift)`` higher)."""
    rows = sorted({u.row for u in units})
    per_row = {r: [k for k, u in enumerate(units) if u.row == r] for r in rows}
    widest = max(len(v) for v in per_row.values())
    spacing = max(_MIN_SPACING, min(_SPACING, 1400.0 / widest))
    width = 2 * _MARGIN + widest * spacing + 90.0
    height = 2 * _MARGIN + (len(rows) - 1) * _ROW_GAP + 40.0
    pos = np.zeros((len(units), 2))
    for n, r in enumerate(rows):
        ks = per_row[r]
        x0 = 90.0 + _MARGIN + (widest - len(ks)) * spacing / 2
        for j, k in enumerate(ks):
            lifted = _ROW_GAP * 0.4 * units[k].lift / (1 + max(units[q].lift for q in ks))
            pos[k] = (x0 + (j + 0.5) * spacing, height - _MARGIN - 20.0 - n * _ROW_GAP - lifted)
    return pos, (width, height), spacing


def view_data(graph: Graph, circuit: Circuit, title: str, placement: Optional[Placement] = None) -> dict[str, Any]:
    """The JSON-able description of the view: units (label, row, position, ports), edges, effects; with a
    ``placement`` (``circuits.viz.placement``), the caller's positions and backdrop instead of rows."""
    units, where = units_of(graph)
    rows = sorted({u.row for u in units})
    placed = None
    if placement is not None:
        placed, pos, spacing = placement_data(placement, graph, where, len(units))
        size = (placed["frame"]["width"], placed["frame"]["height"])
    else:
        pos, size, spacing = positions(units)
    kinds = list(dict.fromkeys(port_kind(p) for u in units for p in u.ports))
    hooks = list(graph.nodes)
    hook_no = {h: n for n, h in enumerate(hooks)}
    edges = sorted(circuit.edges)
    member = np.zeros(len(units), dtype=bool)
    for e in edges:
        member[where[(e.sender, e.sender_index)]] = member[where[(e.receiver, e.receiver_index)]] = True
    effects = [circuit.effects.get(e) for e in edges]
    return {
        "title": title,
        "placement": placed,
        "n_edges": circuit.n_edges,
        "n_total_edges": circuit.n_total_edges,
        "sparsity": circuit.sparsity,
        "has_effects": bool(circuit.effects),
        "size": [round(size[0], 2), round(size[1], 2)],
        "unit_width": round(spacing, 2),
        "hooks": hooks,
        "kinds": kinds,
        "rows": rows,
        "row_labels": row_labels(units, rows, graph.output),
        "output_kind": kinds.index(port_kind(graph.output)),
        "units": {
            "label": [unit_label(u, graph.nodes[u.hook].count, u.hook == graph.output) for u in units],
            "hook": [hook_no[u.hook] for u in units],
            "index": [u.index for u in units],
            "row": [u.row for u in units],
            "xy": np.round(pos, 2).tolist(),
            "ports": [[hook_no[p] for p in u.ports] for u in units],
            "port_kinds": [[kinds.index(port_kind(p)) for p in u.ports] for u in units],
            "in_circuit": member.astype(int).tolist(),
        },
        "edges": {
            "s": [where[(e.sender, e.sender_index)] for e in edges],
            "r": [where[(e.receiver, e.receiver_index)] for e in edges],
            "sh": [hook_no[e.sender] for e in edges],
            "rh": [hook_no[e.receiver] for e in edges],
            "si": [e.sender_index for e in edges],
            "ri": [e.receiver_index for e in edges],
            "kind": [kinds.index(port_kind(e.receiver)) for e in edges],
            "e": [None if v is None or not np.isfinite(v) else float(f"{v:.6g}") for v in effects],
        },
    }
