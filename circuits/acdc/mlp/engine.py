"""The fast ACDC engine for MLP-shaped graphs: the reference's decisions, without a forward pass per edge.

Applies when every connection has a dense ``weight``, connection k feeds only connection k+1 (via
``Graph.node_output``), nodes are neurons on the last axis and the graph declares every hidden node's
elementwise nonlinearity (``Graph.activations``; never read from the model's class). Why it is exact:

* Removing edge i->j while testing receiver layer k+1 changes only ``z_{k+1}[j]``, by
  ``d_i = W[j,i] (a'_k[i] - a_k[i])`` (a vector over the batch). Layers <= k are fixed (ACDC goes
  output-first) and the change travels downstream only through edges still in the circuit, since
  absent edges carry ``a'``: ``dz_{m+1} = (a_m^new - a_m) @ (W_m * present_m).T`` over the neurons
  that changed.
* Ties, as the reference: an edge with ``a'_i == a_i`` on every example or ``W[j,i] == 0`` has effect
  exactly 0 by rule (``loop``'s tie rule; ``MLP.unchanged``); an effect within rounding of the threshold is
  re-scored by the reference's own computation (``ties.Ties``), so rounding cannot make the engines disagree.
* KL in float64 (the default discovery): ACDC's own sequential loop over a receiver's senders, compiled
  (path ``mlp.compiled``: ``compiled``, on the CPU): each candidate's state scored once, on the examples it moves, in order.
* Otherwise (other metrics, float32 discovery, nonlinearities the compiled loop does not know),
  speculate and verify (path ``mlp.speculative``: ``speculative``): guess each remaining sender's decision (KL: the sequential loop run on a per-example
  polynomial model of the KL over the inputs the loop can reach, ``guess.Polynomial``, from the accepted
  state before each block; other metrics: "removed", then the effects measured in the last pass), build the
  chain of states the sequential loop would visit under those guesses (exclusive prefix sums of the removed
  ``d_i``), score all of them in one batched pass, and accept decisions up to the first that differs from its
  guess. Every accepted decision was scored at exactly the state the sequential loop has.
  Chains are cut into blocks of about twice the last run of correct predictions (at most ``MLPOptions.block``).
* Scoring: whole states (``_Dense``), or, for KL on hidden receivers where removals move only some examples
  (MNIST pixels equal in both images of a pair), only the (state, example) pairs that move (``_Pairs``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuits.acdc.loop import Decisions, Node, Problem, Stats
from circuits.acdc.mlp import compiled, speculative
from circuits.acdc.mlp.state import State
from circuits.acdc.mlp.ties import Ties
from circuits.graph import Graph


def supports(model: Any, graph: Graph) -> bool:
    """Whether ``graph`` is a plain MLP chain this engine handles (otherwise use the reference)."""
    conns = graph.connections
    if any(c.receiver not in graph.activations for c in conns[:-1]):
        return False  # a hidden node whose nonlinearity is not declared: only a forward pass knows it
    if any(c.weight is None for c in conns) or conns[-1].receiver != graph.output:
        return False
    if len({c.sender for c in conns}) != len(conns) or len({c.receiver for c in conns}) != len(conns):
        return False
    if any(graph.nodes[h].axis != -1 for h in graph.nodes):
        return False
    return all(graph.node_output.get(a.receiver) == b.sender for a, b in zip(conns[:-1], conns[1:]))


class MLP:
    """``loop.Decider`` for MLP chains: receiver j of layer k+1 is node j of connection k's receiver."""

    def __init__(self, p: Problem) -> None:
        self.p = p
        self.st = State(p)
        self.compiled = p.options.mlp.compiled and compiled.supports(self.st)
        self.path = "mlp.compiled" if self.compiled else "mlp.speculative"
        self.stats = Stats()
        self.ties = Ties(self.st)
        self.layer = {c.receiver: k for k, c in enumerate(self.st.conns)}
        self.k, self.diff, self.moved = 0, torch.empty(0), torch.empty(0)
        self._zj: Tensor = torch.empty(0)

    def start(self) -> Tensor:
        st = self.st
        return self.p.metric(st.Z[st.L], self.p.full_logits).detach().reshape(())

    def enter(self, receiver: str) -> None:
        st = self.st
        self.k = k = self.layer[receiver]
        self.diff = st.P[k] - st.A[k]  # A[k] is fixed while layer k+1 is processed
        self.moved = (self.diff != 0).any(dim=0)

    def unchanged(self, node: Node) -> tuple[Tensor, ...]:
        """``a'_i == a_i`` on every example, or ``W[j, i] == 0``; remembers the row for the tie re-scoring."""
        (span,) = node.spans
        w = self.st.W[self.k][node.index, span.senders]
        zero = ~(self.moved[span.senders] & (w != 0))
        self.ties.start(self.st.M[self.k][node.index].clone(), span.senders[zero], span.senders[~zero])
        return (zero,)

    def decide(self, node: Node, current: Any) -> Decisions:
        (span,) = node.spans
        k, j, st = self.k, node.index, self.st
        d = self.diff[:, span.senders] * st.W[k][j, span.senders]  # (b, n): change of z_j per removed edge
        if self.compiled:
            effects, removed, current, self._zj = compiled.decide(st, self.ties, k, j, d)
        else:
            effects, removed, current, self._zj = speculative.decide(st, self.ties, k, j, d, current)
        self.stats.passes, self.stats.rescored = st.passes, self.ties.rescored
        return Decisions((effects,), (removed,), current)

    def settled(self, node: Node, decisions: Decisions) -> None:
        """Removals committed: the tie state and the activations downstream of ``z_j`` move to the new circuit."""
        (removed,) = decisions.removed
        if bool(removed.any()):
            self.ties.committed(self.k, node.index, removed)
            self.st.commit(self.k, node.index, self._zj)
