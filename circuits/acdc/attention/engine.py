"""The fast ACDC engine for attention graphs (TransformerLens bridges, SPEC 7): the reference's decisions
with many candidate circuits scored in one forward pass.

While ACDC processes a receiver hook R at layer l (output-first), every sender of R is upstream of R, so its
activation ``a_S`` in the current circuit is fixed; removing the edge s -> R[r] adds exactly

    c_{s->r} = [contribute_{S->R}((a'_S - a_S) restricted to node s)] restricted to node r

to receiver node r's input. The sequential loop over the senders of R[r] visits states that differ from
the current circuit only in R[r]'s input: state j (testing edge e_j) adds ``sum_{i<j removed} c_i + c_j``.

Speculate and verify: predict each decision (``circuits.acdc.attention.speculate``: from the sizes of earlier decided
contributions, or from a state scored in an earlier pass), build the chain of states the loop would visit
under those predictions, stack them on the batch axis and score them in one forward pass; accept decisions up
to and including the first that differs from its prediction (each accepted one was scored at exactly the
state the sequential loop has). The stacked pass starts at the
receiver's layer: the clean batch runs once through the layers before l and is copied per candidate at
``blocks.{l}.hook_in`` (at the output hook for the output receiver), so the early layers are not repeated.
Float64 reaches the reference's edge sets: the two differ only in the order of floating-point additions.

On bridges whose weights ``circuits.acdc.attention.blocks`` can read (GPT-2, Llama, GPT-NeoX, Mistral, ...) a
state is not run through the bridge: ``circuits.acdc.attention.delta`` recomputes only the changed head or MLP and
what it reaches through present edges, at the positions the metric reads (every position where a later attention
layer reads it), from a cached baseline of the current circuit; after a node's removals the baseline becomes the state
scored for its last removal (that state is the new circuit: every later candidate of the node was kept). The
functional blocks are checked once against the bridge's own patched forward on the clean batch; blocks that do not
reproduce it (a configuration they do not model) are not used (an error with ``Options.strict``, else a warning,
then stacked forwards). An
edge whose contribution ``c`` is exactly 0 has effect exactly 0 (the reference's tie rule). Other bridges use
the stacked bridge forward above (``stacked.Stacked``: copied at the receiver's block where a probe shows that is
exact, else stacked at the input). Paths: ``attention.delta``, ``attention.stacked`` (``circuits.acdc.options``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Optional

import torch
from torch import Tensor

from circuits.acdc.attention import delta as bridge_delta, scorer as bridge_scorer, speculate
from circuits.acdc.attention.node import decide_node
from circuits.acdc.attention.stacked import Stacked, node_slice
from circuits.acdc.loop import Decisions, Node, Problem, Stats
from circuits.graph import Graph
from circuits.patching import run_with_mask


def _contributions(p: Problem, cands: list[tuple[Any, int]], acts: dict[str, Tensor], diffs: dict[str, Tensor]
                   ) -> Tensor:
    """``c_{s->r}`` of each candidate edge (module docstring), stacked: ``(n_cand, batch, *node_shape)``. With SPEC 7's
    contributions (``Attention.supports``: a sender's output summed into the residual stream, copied to every receiver
    node) this is sender node ``s``'s own ``a'_s - a_s`` whatever ``r`` (the sum over the other, zero, nodes is exact).
    ``diffs``: each sender hook's ``a' - a``, filled as needed (valid while ``acts`` are)."""
    graph = p.graph
    out = []
    for conn, s in cands:
        if conn.sender not in diffs:
            diffs[conn.sender] = p.a_prime[conn.sender] - acts[conn.sender]
        out.append(node_slice(diffs[conn.sender], graph.nodes[conn.sender], s))
    return torch.stack(out)


def _block(receiver_shape: tuple[int, ...], state_elements: int, max_block: int) -> int:
    per_state = 1
    for d in receiver_shape:
        per_state *= d
    return max(1, min(max_block, state_elements // max(1, per_state)))


class DeltaStack:
    """``score`` for ``decide_node`` on the delta path (``circuits.acdc.attention.delta``)."""

    def __init__(self, p: Problem, scorer: Any, receiver: str, guesser: Any) -> None:
        self.p, self.scorer, self.receiver, self.guesser = p, scorer, receiver, guesser
        self.passes = 0
        self.last: Optional[tuple[list, int]] = None  # (cache writes of a pass, state) of the node's last removal

    def accepted(self, j: int) -> None:
        """State ``j`` of the last pass is a removal: after this node's last removal the circuit is that state (every
        later candidate of the node is kept), so its recomputed activations become the baseline (``commit``)."""
        self.last = (self.scorer.writes, j)

    def commit(self) -> None:
        if self.last is not None:
            with torch.inference_mode():  # see ``score``
                self.scorer.keep(self.last[1], self.last[0])
        self.last = None

    def score(self, r: int, extra: Tensor) -> Tensor:
        """The metric of each state. The scorer's tensors never meet autograd or the model's modules (the blocks are
        functions of the weights): inference mode, which spares each of a pass's hundreds of small ops some dispatch
        work; what it creates is read only here and in ``commit``, and the baseline it updates stays a plain tensor."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = self.scorer.logits(self.receiver, r, extra)
            out = self.p.metric.many(logits, self.p.full_logits).reshape(extra.shape[0])
        self.passes += 1
        self.guesser.timed(extra.shape[0], time.perf_counter() - t0)
        return out


def _verified_baseline(p: Problem) -> tuple[Optional[tuple[Any, bridge_delta.Baseline]], Tensor]:
    """``(BridgeBlocks, baseline)`` when the functional blocks reproduce this bridge's patched forward on the clean
    batch (logits within 1e-5 of their scale in float64, where HF still takes some norms and softmaxes in float32;
    1e-3 in lower precision), else None with a warning (an error with ``Options.strict``): a configuration the blocks
    do not model is scored by stacked bridge forwards rather than wrongly. Returned with that forward's logits (the
    starting circuit's, the bridge's own; with every edge present, the clean run's ``full_logits``: the patching
    hooks would add nothing)."""
    from circuits.acdc.attention.blocks import BridgeBlocks

    bb = BridgeBlocks(p.model)
    with torch.no_grad():
        st = bridge_delta.baseline(bb, p.graph, p.clean, p.a_prime, p.mask)
        if all(bool(m.all()) for m in p.mask.values()):  # nothing patched: the bridge's forward is ``full_logits``
            want = p.full_logits
        else:
            want, _ = run_with_mask(p.model, p.clean, p.a_prime, p.mask, p.graph)
    err = float((st.logits - want).abs().max())
    rel = 1e-5 if want.dtype == torch.float64 else 1e-3  # a block computing something else is off by far more
    if err <= rel * (1.0 + float(want.abs().max())):
        return (bb, st), want
    msg = (f"circuits: the fast engine's functional blocks differ from this bridge's forward (largest logit "
           f"difference {err:.3g})")
    if p.options.strict:
        raise RuntimeError(f"{msg}; Options.strict forbids falling back to stacked bridge forwards")
    warnings.warn(f"{msg}; scoring by stacked bridge forwards instead (slower, same circuit)")
    return None, want


class Attention:
    """``loop.Decider`` for SPEC 7 bridge graphs (module docstring): the delta path where the functional blocks
    reproduce the bridge, else stacked bridge forwards."""

    @staticmethod
    def supports(model: Any, graph: Graph) -> bool:
        """SPEC 7 graphs the bridge family built (registered with this engine: ``circuits.families``; their
        contributions are what ``delta.mix`` computes); receivers named ``blocks.{l}.…`` give the layer a stacked
        pass starts at."""
        return all(r.startswith("blocks.") for r in graph.receivers())

    def __init__(self, p: Problem) -> None:
        from circuits.acdc.attention import blocks

        self.p, self.o = p, p.options.attention
        self.stats = Stats()
        verified = None
        self.start_logits: Optional[Tensor] = None  # the starting circuit's, from the bridge (``start``)
        if self.o.delta and blocks.supported(p.model, p.clean.shape[1]):
            verified, self.start_logits = _verified_baseline(p)
        self.bb, self.base = verified if verified is not None else (None, None)
        self.path = "attention.delta" if verified is not None else "attention.stacked"
        make = self.o.guesser or speculate.Guesser
        self.guesser = make(self.o.delta_overhead if verified is not None else self.o.stacked_overhead)
        self.copy: dict[str, bool] = {}  # per copy point: whether states may be copied there (``Stacked``)
        self.P = bridge_delta.metric_positions(p.metric, p.full_logits) if verified is not None else None
        self.c, self.sizes = torch.empty(0), []  # the live candidates' contributions and ``||c||^2`` (``unchanged``)
        self.lasting: dict = {}  # ``Scorer._lasting``: shared by the scorers of every node of this discovery

    def start(self) -> float:
        """The starting circuit's metric, from the bridge's forward the blocks were checked against (when they were)."""
        if self.start_logits is None:
            return self.p.score(self.p.mask)
        return float(self.p.metric(self.start_logits, self.p.full_logits))

    def enter(self, receiver: str) -> None:
        p = self.p
        self.guesser.start(receiver)
        self.acts: Optional[dict[str, Tensor]] = self.base.acts if self.base is not None else None
        self.diffs: dict[str, Tensor] = {}  # senders' ``a' - a``: fixed while the receiver is processed, as ``acts``
        if self.base is not None:
            self.lvl = bridge_delta.levels(self.bb, p.graph, p.mask)
            self.stack: Any = DeltaStack(p, None, receiver, self.guesser)
        else:
            self.stack = Stacked(p, receiver, self.copy)
            self.stack.guesser = self.guesser

    def unchanged(self, node: Node) -> tuple[Tensor, ...]:
        """A candidate whose contribution ``c`` is exactly 0 (``||c||^2 == 0``); ``c`` kept for ``decide``."""
        p = self.p
        if self.acts is None:  # senders' current activations: fixed while the receiver is processed
            senders = tuple(dict.fromkeys(s.conn.sender for s in node.spans))
            _, self.acts = run_with_mask(p.model, p.clean, p.a_prime, p.mask, p.graph, senders)
        cands = [(s.conn, i) for s in node.spans for i in s.senders.tolist()]
        c = _contributions(p, cands, self.acts, self.diffs)
        size = c.reshape(len(cands), -1).pow(2).sum(dim=1)  # ``||c||^2``, also the guesses' feature (``decide``)
        zero = size == 0
        self.c = c[~zero] if bool(zero.any()) else c  # a boolean gather copies every contribution
        self.sizes = size[~zero].tolist()
        return tuple(torch.split(zero, [len(s.senders) for s in node.spans]))

    def decide(self, node: Node, current: Any) -> Decisions:
        p, r, c = self.p, node.index, self.c
        cands = [(s.conn, i) for s in node.spans for i in s.senders.tolist()]
        offset = None
        if self.base is not None:
            self.stack.scorer = bridge_scorer.Scorer(self.bb, p.graph, p.mask, self.base, self.lvl, self.P,
                                                     self.lasting)
            offset = torch.zeros_like(c[0])
        before = self.stack.passes
        k_max = _block(tuple(c.shape[1:]), self.o.state_elements, self.o.max_block)
        effects, removed, current = decide_node(p, self.stack, node.receiver, r, cands, c, self.sizes, current, k_max,
                                                offset)
        self.stats.passes += self.stack.passes - before
        self.offset = offset
        sizes = [len(s.senders) for s in node.spans]
        return Decisions(tuple(torch.split(torch.tensor(effects, dtype=torch.float64), sizes)),
                         tuple(torch.split(torch.tensor(removed, dtype=torch.bool), sizes)), current)

    def settled(self, node: Node, decisions: Decisions) -> None:
        """Delta path: after a node's removals the baseline moves to the new circuit (``DeltaStack.commit``)."""
        if self.base is not None:
            if bool((self.offset != 0).any()):
                self.stack.commit()
            self.stack.last = None
