"""Stacked bridge forwards (path ``attention.stacked``): candidate states of one receiver node scored by running
the bridge itself on them, stacked on the batch axis (``circuits.acdc.attention.engine``'s docstring), for bridges
whose weights ``attention.blocks`` cannot read."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from circuits.acdc.attention.delta import mix as _mix
from circuits.acdc.loop import Problem
from circuits.graph import Nodes


def _layer(hook: str) -> int:
    return int(hook.split(".")[1])


def node_slice(t: Tensor, nodes: Nodes, index: int) -> Tensor:
    """Node ``index`` of a batch-first activation (the whole tensor for a one-node hook)."""
    return t if nodes.axis is None else t.select(nodes.axis, index)


class Stacked:
    """Forward passes of ``n`` candidate states of receiver node ``R[r]``, stacked on the batch axis.

    The states are copied where the receiver's layer starts (``blocks.{l}.hook_in``), so the layers before it run
    once. Some bridges build per-batch tensors before the first block (an attention mask, for instance, on Qwen 3,
    OLMo, StableLM, SmolLM 3; GPT-BigCode's breaks even at the output) that a batch grown mid-forward no longer
    fits; ``copy`` (shared by every receiver of one discovery) says per copy point whether it may be used, found
    by a probe on its first pass (``_probe``). Otherwise the clean batch is stacked at the input and every layer
    runs per state."""

    def __init__(self, p: Problem, receiver: str, copy: dict[str, bool]) -> None:
        self.p, self.graph, self.receiver = p, p.graph, receiver
        self.copy_at = receiver if receiver == p.graph.output else f"blocks.{_layer(receiver)}.hook_in"
        self.copy = copy
        self.senders = set(self.graph.senders())
        self.receivers = set(self.graph.receivers())
        self.passes = 0

    def accepted(self, j: int) -> None:
        """Nothing cached to move (each pass runs the bridge from the current mask)."""

    def _probe(self, r: int, extra: Tensor) -> bool:
        """Whether states copied at ``copy_at`` score as the whole stacked batch does (the same maths, so equal up to
        rounding): both ways on two copies of the first state; an error from the bridge on the grown batch is a no."""
        extra = torch.cat([extra[:1], extra[:1]])
        try:
            grown = self._forward(r, extra, grow=True)
        except (RuntimeError, ValueError, IndexError):  # a per-batch tensor built before the copy point
            return False
        whole = self._forward(r, extra, grow=False)
        tol = math.sqrt(torch.finfo(whole.dtype).eps) * (1.0 + float(whole.abs().max()))
        return bool(((grown - whole).abs() <= tol).all())

    def score(self, r: int, extra: Tensor) -> Tensor:
        """The metric of each state: the current circuit with ``extra[j]`` added to ``R[r]``'s input."""
        if self.copy_at not in self.copy:
            self.copy[self.copy_at] = self._probe(r, extra)
        self.passes += 1
        return self._forward(r, extra, grow=self.copy[self.copy_at])

    def _forward(self, r: int, extra: Tensor, grow: bool) -> Tensor:
        """One stacked pass. Activations holding ``n`` states x ``batch`` rows (after the copy point, or all of
        them when the input is stacked) are viewed as ``(n, batch, ...)`` so that ``a'`` and the patch terms of
        unstacked senders broadcast over states."""
        n, b = extra.shape[0], self.p.clean.shape[0]
        graph, a_prime = self.graph, self.p.a_prime
        absent = {k: None if bool(m.all()) else (~m).to(extra.dtype) for k, m in self.p.mask.items()}
        current: dict[str, Tensor] = {}

        def fn(act: Tensor, hook: Any) -> Tensor:
            name = hook.name
            if grow and name == self.copy_at:
                act = act.repeat(n, *([1] * (act.dim() - 1)))
            stacked = act.shape[0] != b
            if name in self.receivers:
                term: Optional[Tensor] = None
                for conn in graph.connections_into(name):
                    a = absent[(conn.sender, name)]
                    if a is None:
                        continue
                    cur = current[conn.sender]
                    delta = a_prime[conn.sender] - (cur.view(n, b, *cur.shape[1:]) if cur.shape[0] != b else cur)
                    t = _mix(delta, a, graph.nodes[conn.sender].axis is not None, graph.nodes[name].axis is not None)
                    term = t if term is None else term + t
                if term is not None:
                    act = (act.view(n, b, *act.shape[1:]) + term).view(act.shape) if stacked else act + term
            if name == self.receiver:
                act = act.clone()
                node_slice(act.view(n, b, *act.shape[1:]), _shifted(graph.nodes[name]), r).add_(extra)
            if name in self.senders:
                current[name] = act
            return act

        hooks = sorted(self.senders | self.receivers | ({self.copy_at} if grow else set()))
        clean = self.p.clean if grow else self.p.clean.repeat(n, *([1] * (self.p.clean.dim() - 1)))
        with torch.no_grad(), self.p.model.hooks(fwd_hooks=[(h, fn) for h in hooks]):
            logits = self.p.model(clean)
        return self.p.metric.many(logits.reshape(n, b, *logits.shape[1:]), self.p.full_logits).reshape(n)


def _shifted(nodes: Nodes) -> Nodes:
    """The same nodes on an activation with one more leading (state) axis."""
    if nodes.axis is None or nodes.axis < 0:
        return nodes
    return Nodes(nodes.hook, nodes.count, nodes.axis + 1)
