"""The fast ACDC engine for attention graphs (TransformerLens bridges, SPEC 7): the reference's decisions
with many candidate circuits scored in one forward pass.

While ACDC processes a receiver hook R at layer l (output-first), every sender of R is upstream of R, so its
activation ``a_S`` in the current circuit is fixed; removing the edge s -> R[r] adds exactly

    c_{s->r} = [contribute_{S->R}((a'_S - a_S) restricted to node s)] restricted to node r

to receiver node r's input. The sequential loop over the senders of R[r] visits states that differ from
the current circuit only in R[r]'s input: state j (testing edge e_j) adds ``sum_{i<j removed} c_i + c_j``.

Speculate and verify: predict each decision (``circuits.acdc.speculate``: from the sizes of earlier decided
contributions, or from a state scored in an earlier pass), build the chain of states the loop would visit
under those predictions, stack them on the batch axis and score them in one forward pass; accept decisions up
to and including the first that differs from its prediction (each accepted one was scored at exactly the
state the sequential loop has). The stacked pass starts at the
receiver's layer: the clean batch runs once through the layers before l and is copied per candidate at
``blocks.{l}.hook_in`` (at the output hook for the output receiver), so the early layers are not repeated.
Float64 reaches the reference's edge sets: the two differ only in the order of floating-point additions.

On bridges whose weights ``circuits.models.bridge_blocks`` can read (GPT-2, Llama, GPT-NeoX, Mistral, ...) a
state is not run through the bridge: ``circuits.acdc.bridge_delta`` recomputes only the changed head or MLP and
what it reaches through present edges, at the positions the metric reads (every position where a later attention
layer reads it), from a cached baseline of the current circuit; after a node's removals the baseline becomes the state
scored for its last removal (that state is the new circuit: every later candidate of the node was kept). The
functional blocks are checked once against the bridge's own patched forward on the clean batch; blocks that do not
reproduce it (a configuration they do not model) are not used (a warning, then stacked forwards). An
edge whose contribution ``c`` is exactly 0 has effect exactly 0 (the reference's tie rule). Other bridges use
the stacked bridge forward above (copied at the receiver's block where a probe shows that is exact, else stacked
at the input: ``_Stacked``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import torch
from torch import Tensor

from circuits.acdc.loop import Problem, clean_up, drop_if_dead, receiver_order
from circuits.graph import Edge, Graph, Nodes
from circuits.models import transformer_bridge
from circuits.patching import EdgeMask, run_with_mask
from circuits.acdc.bridge_delta import mix as _mix
from circuits.acdc import bridge_delta, bridge_scorer, speculate

_STATE_ELEMENTS = 1 << 23  # bound on one stacked receiver activation (states x batch x pos x heads x d)
_MAX_BLOCK = 64
# a pass's fixed cost in states (``speculate``): measured on the 4-layer benchmark bridge, a delta pass of n states
# costs about (0.6 + n) states; a stacked bridge forward pays the bridge's per-call overhead once per pass
_DELTA_OVERHEAD, _STACKED_OVERHEAD = 0.75, 4.0


def supports(model: Any, graph: Graph) -> bool:
    """Bridges whose graph is SPEC 7's, built by ``circuits.models.transformer_bridge`` (its contributions are
    what ``_mix`` computes; receivers named ``blocks.{l}.…`` give the layer a stacked pass starts at)."""
    return transformer_bridge.built_here(model, graph) and all(r.startswith("blocks.") for r in graph.receivers())


def _layer(hook: str) -> int:
    return int(hook.split(".")[1])


def _node(t: Tensor, nodes: Nodes, index: int) -> Tensor:
    """Node ``index`` of a batch-first activation (the whole tensor for a one-node hook)."""
    return t if nodes.axis is None else t.select(nodes.axis, index)


class _Stacked:
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
                _node(act.view(n, b, *act.shape[1:]), _shifted(graph.nodes[name]), r).add_(extra)
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


def _contributions(p: Problem, receiver: str, r: int, cands: list[tuple[Any, int]], acts: dict[str, Tensor]) -> Tensor:
    """``c_{s->r}`` of each candidate edge (module docstring), stacked: ``(n_cand, batch, *node_shape)``. With SPEC 7's
    contributions (``supports``: a sender's output summed into the residual stream, copied to every receiver
    node) this is sender node ``s``'s own ``a'_s - a_s`` whatever ``r`` (the sum over the other, zero, nodes is exact)."""
    graph = p.graph
    diffs: dict[str, Tensor] = {}
    out = []
    for conn, s in cands:
        if conn.sender not in diffs:
            diffs[conn.sender] = p.a_prime[conn.sender] - acts[conn.sender]
        out.append(_node(diffs[conn.sender], graph.nodes[conn.sender], s))
    return torch.stack(out)


def _block(receiver_shape: tuple[int, ...]) -> int:
    per_state = 1
    for d in receiver_shape:
        per_state *= d
    return max(1, min(_MAX_BLOCK, _STATE_ELEMENTS // max(1, per_state)))


def _receiver_node(p: Problem, stack: Any, receiver: str, r: int, cands: list, c: Tensor,
                   current: float, effects: dict[Edge, float], k_max: int, offset: Optional[Tensor] = None) -> float:
    """Decide every candidate edge into ``R[r]`` in the sequential order, up to ``k_max`` states per pass.

    Which states a pass scores (how many, under which guesses) is ``circuits.acdc.speculate``'s choice; after a
    miss, the states scored past it give the next guesses. ``offset`` (delta path: states are scored against a
    cached baseline taken before this node's removals) accumulates the accepted removals' contributions. An edge
    whose contribution is exactly 0 has effect exactly 0 (the tie rule of ``loop.unchanged_edges``)."""
    sizes = c.reshape(len(cands), -1).pow(2).sum(dim=1).tolist()
    zero = [s == 0 for s in sizes]
    rescored: list[Optional[bool]] = [None] * len(cands)  # guesses read from states scored in an earlier pass
    pos = 0
    while pos < len(cands):
        prior, miss = stack.guesser.prior(sizes[pos:])
        guess = [p.threshold > 0 if zero[i] else prior[i - pos] if rescored[i] is None else rescored[i]
                 for i in range(pos, len(cands))]
        q = [0.0 if zero[i] else miss[i - pos] if rescored[i] is None else speculate._RESCORED
             for i in range(pos, len(cands))]
        end = pos + stack.guesser.block(q, min(k_max, _MAX_BLOCK))
        pred = torch.tensor(guess[:end - pos], dtype=torch.bool, device=c.device)
        taken = c[pos:end] * pred.view(-1, *([1] * (c.dim() - 1))).to(c.dtype)
        extra = torch.cumsum(taken, dim=0) - taken + c[pos:end]  # exclusive prefix of predicted removals + own
        scores = stack.score(r, extra if offset is None else extra + offset).tolist()
        cur = current
        for i, new in enumerate(scores):
            conn, s = cands[pos + i]
            new = cur if zero[pos + i] else new
            effects[Edge(conn.sender, s, receiver, r)] = new - cur
            removed = new - cur < p.threshold
            stack.guesser.remember(sizes[pos + i], removed)
            if removed:
                p.mask[(conn.sender, receiver)][r, s] = False
                cur = new
                stack.accepted(i)
                if offset is not None:
                    offset += c[pos + i]
            if removed != guess[i]:
                for j in range(i + 1, len(scores)):
                    rescored[pos + j] = scores[j] - cur < p.threshold
                break
        current, pos = cur, pos + i + 1
    return current


class _DeltaStack:
    """``score`` for ``_receiver_node`` on the delta path (``circuits.acdc.bridge_delta``)."""

    def __init__(self, p: Problem, scorer: Any, receiver: str) -> None:
        self.p, self.scorer, self.receiver = p, scorer, receiver
        self.passes = 0
        self.last: Optional[tuple[list, int]] = None  # (cache writes of a pass, state) of the node's last removal

    def accepted(self, j: int) -> None:
        """State ``j`` of the last pass is a removal: after this node's last removal the circuit is that state (every
        later candidate of the node is kept), so its recomputed activations become the baseline (``commit``)."""
        self.last = (self.scorer.writes, j)

    def commit(self) -> None:
        if self.last is not None:
            self.scorer.keep(self.last[1], self.last[0])
        self.last = None

    def score(self, r: int, extra: Tensor) -> Tensor:
        logits = self.scorer.logits(self.receiver, r, extra)
        self.passes += 1
        return self.p.metric.many(logits, self.p.full_logits).reshape(extra.shape[0])


def _live_candidates(graph: Graph, mask: EdgeMask, receiver: str, r: int, conns: list) -> list:
    """SPEC order's per-node start: a hidden node that feeds nothing loses its inputs (returns []); otherwise
    the ``(connection, sender node)`` pairs still present into receiver node ``r``, in sender order."""
    if drop_if_dead(graph, mask, receiver, r):
        return []
    return [(c, s) for c in conns for s in range(graph.nodes[c.sender].count) if bool(mask[(c.sender, receiver)][r, s])]


def _verified_baseline(p: Problem) -> Optional[tuple[Any, dict]]:
    """``(BridgeBlocks, baseline)`` when the functional blocks reproduce this bridge's patched forward on the clean
    batch (logits within 1e-5 of their scale in float64, where HF still takes some norms and softmaxes in float32;
    1e-3 in lower precision), else None with a warning: a configuration the blocks do not model is scored by
    stacked bridge forwards rather than wrongly."""
    from circuits.models.bridge_blocks import BridgeBlocks

    bb = BridgeBlocks(p.model)
    with torch.no_grad():
        st = bridge_delta.baseline(bb, p.graph, p.clean, p.a_prime, p.mask)
        want, _ = run_with_mask(p.model, p.clean, p.a_prime, p.mask, p.graph)
    err = float((st["logits"] - want).abs().max())
    rel = 1e-5 if want.dtype == torch.float64 else 1e-3  # a block computing something else is off by far more
    if err <= rel * (1.0 + float(want.abs().max())):
        return bb, st
    warnings.warn(f"circuits: the fast engine's functional blocks differ from this bridge's forward (largest logit "
                  f"difference {err:.3g}); scoring by stacked bridge forwards instead (slower, same circuit)")
    return None


def _delta_engine(p: Problem, bb: Any, st: dict) -> tuple[EdgeMask, dict[Edge, float], int]:
    """The engine on bridges ``bridge_blocks`` reads: candidate states scored by ``bridge_delta`` (what changes),
    from the verified baseline ``st`` of the current circuit."""
    graph, mask = p.graph, p.mask
    P = bridge_delta.metric_positions(p.metric, p.full_logits)
    current = p.score(mask)
    effects: dict[Edge, float] = {}
    passes = 0
    guesser = speculate.Guesser(overhead=_DELTA_OVERHEAD)
    with torch.no_grad():
        for receiver in receiver_order(graph, p.progress):
            conns = graph.connections_into(receiver)
            lvl, stack = bridge_delta.levels(bb, graph, mask), _DeltaStack(p, None, receiver)
            guesser.start(receiver)
            stack.guesser = guesser
            for r in range(graph.nodes[receiver].count):
                cands = _live_candidates(graph, mask, receiver, r, conns)
                if not cands:
                    continue
                stack.scorer = bridge_scorer.Scorer(bb, graph, mask, st, lvl, P)
                c = _contributions(p, receiver, r, cands, st["acts"])
                offset = torch.zeros_like(c[0])
                current = _receiver_node(p, stack, receiver, r, cands, c, current, effects,
                                         _block(tuple(c.shape[1:])), offset)
                if bool((offset != 0).any()):  # accepted removals: the baseline moves to the new circuit
                    stack.commit()
                stack.last = None
            passes += stack.passes
    clean_up(graph, mask)
    p.passes, p.rescored = passes, 0  # ties are decided by rule (zero contribution), never rescored
    return mask, effects, len(effects)


def fast_attention_engine(p: Problem) -> tuple[EdgeMask, dict[Edge, float], int]:
    """Same contract as ``circuits.acdc.reference.reference_engine`` (module docstring for how)."""
    from circuits.models import bridge_blocks

    if bridge_blocks.supported(p.model, p.clean.shape[1]):
        verified = _verified_baseline(p)
        if verified is not None:
            return _delta_engine(p, *verified)
    graph, mask = p.graph, p.mask
    current = p.score(mask)
    effects: dict[Edge, float] = {}
    passes = 0
    guesser = speculate.Guesser(overhead=_STACKED_OVERHEAD)
    copy: dict[str, bool] = {}  # per copy point: whether states may be copied there (``_Stacked``)
    for receiver in receiver_order(graph, p.progress):
        conns = graph.connections_into(receiver)
        acts: Optional[dict[str, Tensor]] = None  # senders' current activations: fixed while R is processed
        stack = _Stacked(p, receiver, copy)
        guesser.start(receiver)
        stack.guesser = guesser
        for r in range(graph.nodes[receiver].count):
            cands = _live_candidates(graph, mask, receiver, r, conns)
            if not cands:
                continue
            if acts is None:
                _, acts = run_with_mask(p.model, p.clean, p.a_prime, mask, graph, tuple(c.sender for c in conns))
            c = _contributions(p, receiver, r, cands, acts)
            current = _receiver_node(p, stack, receiver, r, cands, c, current, effects, _block(tuple(c.shape[1:])))
        passes += stack.passes
    clean_up(graph, mask)
    p.passes, p.rescored = passes, 0  # ties are decided by rule (zero contribution), never rescored
    return mask, effects, len(effects)
