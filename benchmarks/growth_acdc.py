"""ACDC's fast engine for ``growth.py``: one run of SPEC 4's loop (``circuits.acdc.loop.run``) in which the fast
engine decides every receiver node, timed per receiver hook, and in which the reference engine decides a sample of
receiver nodes too, from the very same state (the mask and the current metric when the loop reaches the node): the
two must remove the same edges, with effects equal to rounding (the check where the reference is too slow to run
whole: issue 25 item 3). Both are ``loop.Decider``s built on one ``loop.Problem``, composed here through the
protocol's methods; nothing is patched.

A ``budget_s`` stops the loop (between receiver hooks) once the fast engine has used that much CPU time: the hooks
done so far are reported, so a model too large for a full run still gives measured per-hook costs.

Per-hook costs are kept with the blocks a state of the hook recomputes (the receiver's block and every later one; 0
for the output, whose states only unembed and score): ``growth_report.py`` estimates larger models from them.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from circuits import families
from circuits.acdc.loop import Decisions, Node, Problem, run
from circuits.acdc.reference import Reference
from circuits.graph import runnable_graph
from circuits.metrics import resolve
from circuits.patching import corrupted_activations, edges_of_mask, full_mask
from circuits.protocol_check import check_declaration

_LAYER = re.compile(r"^blocks\.(\d+)\.")


class OutOfBudget(Exception):
    """Raised between receiver hooks when the fast engine has used its CPU budget."""


@dataclass
class HookCost:
    """One receiver hook: its blocks recomputed per state, candidates decided, fast engine CPU seconds."""

    hook: str
    blocks: int
    tested: int = 0
    seconds: float = 0.0


@dataclass
class Check:
    """The sampled nodes' agreement with the reference: nodes and edges compared, largest effect difference,
    disagreements (a description each), and the reference's CPU seconds."""

    nodes: int = 0
    edges: int = 0
    max_effect_diff: float = 0.0
    disagreements: list[str] = field(default_factory=list)
    seconds: float = 0.0


def blocks_recomputed(hook: str, n_layers: int) -> int:
    """Blocks a state of ``hook`` recomputes: from the receiver's block to the last; 0 for the output
    (``blocks.{L-1}.hook_out``), which reads the final residual stream."""
    m = _LAYER.match(hook)
    if m is None or hook == f"blocks.{n_layers - 1}.hook_out":
        return 0
    return n_layers - int(m.group(1))


class Sampled:
    """A ``loop.Decider``: ``fast`` decides; on the ``sample`` nodes ((receiver hook, index) pairs) ``ref`` decides
    first from the same mask and ``current``, the mask is put back, and the decisions are compared."""

    def __init__(self, p: Problem, fast: Any, ref: Reference, sample: set, n_layers: int,
                 budget_s: Optional[float] = None) -> None:
        self.p, self.fast, self.ref, self.sample, self.n_layers = p, fast, ref, sample, n_layers
        self.path, self.stats, self.budget_s = fast.path, fast.stats, budget_s
        self.hooks: list[HookCost] = []
        self.check = Check()
        self.fast_seconds = 0.0

    def _timed(self, fn, *args):
        t0 = time.process_time()
        out = fn(*args)
        dt = time.process_time() - t0
        self.fast_seconds += dt
        if self.hooks:
            self.hooks[-1].seconds += dt
        return out

    def _ref(self, fn, *args):
        t0 = time.process_time()
        out = fn(*args)
        self.check.seconds += time.process_time() - t0
        return out

    def start(self) -> Any:
        return self._timed(self.fast.start)

    def enter(self, receiver: str) -> None:
        if self.budget_s is not None and self.hooks and self.fast_seconds > self.budget_s:  # one hook at least
            raise OutOfBudget(receiver)
        self.hooks.append(HookCost(receiver, blocks_recomputed(receiver, self.n_layers)))
        self._timed(self.fast.enter, receiver)
        if any(h == receiver for h, _ in self.sample):
            self._ref(self.ref.enter, receiver)

    def unchanged(self, node: Node) -> tuple:
        zero = self._timed(self.fast.unchanged, node)
        self.hooks[-1].tested += sum(len(s.senders) for s in node.spans)
        if (node.receiver, node.index) in self.sample:
            theirs = self._ref(self.ref.unchanged, node)
            if any(not torch.equal(a.cpu(), b.cpu()) for a, b in zip(zero, theirs)):
                self.check.disagreements.append(f"{node.receiver}[{node.index}]: the tie rule's edges differ")
        return zero

    def decide(self, node: Node, current: Any) -> Decisions:
        if (node.receiver, node.index) not in self.sample:
            return self._timed(self.fast.decide, node, current)
        rows = {s.conn.sender: self.p.mask[(s.conn.sender, node.receiver)][node.index].clone() for s in node.spans}
        theirs = self._ref(self.ref.decide, node, current)
        for sender, row in rows.items():  # the state the fast engine decides from: the one before the reference's
            self.p.mask[(sender, node.receiver)][node.index] = row
        mine = self._timed(self.fast.decide, node, current)
        self._compare(node, mine, theirs)
        return mine

    def _compare(self, node: Node, mine: Decisions, theirs: Decisions) -> None:
        self.check.nodes += 1
        for span, (e1, r1), (e2, r2) in zip(node.spans, zip(mine.effects, mine.removed),
                                            zip(theirs.effects, theirs.removed)):
            self.check.edges += len(span.senders)
            if not torch.equal(r1.cpu(), r2.cpu()):
                self.check.disagreements.append(f"{node.receiver}[{node.index}] from {span.conn.sender}: "
                                                f"removed {r1.tolist()} vs the reference's {r2.tolist()}")
            if len(e1):
                diff = float((e1.double().cpu() - e2.double().cpu()).abs().max())
                self.check.max_effect_diff = max(self.check.max_effect_diff, diff)

    def settled(self, node: Node, decisions: Decisions) -> None:
        self._timed(self.fast.settled, node, decisions)


def receiver_nodes(graph: Any) -> list[tuple[str, int]]:
    return [(h, r) for h in graph.receivers() for r in range(graph.nodes[h].count)]


def sample_nodes(graph: Any, k: int, seed: int = 0, skip: tuple[str, ...] = ()) -> set:
    """``k`` receiver nodes drawn at random (seeded) from every receiver hook but ``skip``."""
    nodes = [n for n in receiver_nodes(graph) if n[0] not in skip]
    return set(random.Random(seed).sample(nodes, min(k, len(nodes))))


@dataclass
class Outcome:
    """One sampled-and-timed run: finished or stopped by the budget; edges kept; the per-hook costs; the check;
    the fast engine's CPU seconds (set-up and its own calls; the loop's bookkeeping adds a little); the path."""

    finished: bool
    n_edges: int
    n_kept: Optional[int]
    tested: int
    hooks: list[HookCost]
    check: Check
    fast_seconds: float
    path: str
    passes: int


def run_sampled(model: Any, clean: torch.Tensor, corrupted: torch.Tensor, threshold: float, sample_k: int,
                budget_s: Optional[float] = None, seed: int = 0) -> Outcome:
    """The loop with the fast engine of the bridge family deciding and ``sample_k`` sampled nodes checked against
    the reference (KL at the last position, resample ablation: ``circuits.acdc``'s defaults)."""
    graph = check_declaration(model, runnable_graph(model), clean, corrupted)
    device = next(model.parameters()).device
    fast_cls = families.engine_class(families.named(graph.family))
    with torch.no_grad():
        t0 = time.process_time()  # what circuits.acdc's clock covers before the loop: a', the problem, the engine
        a_prime = corrupted_activations(model, corrupted, "resample", graph)
        p = Problem(model, graph, clean, a_prime, resolve("kl"), threshold, full_mask(graph, device), False)
        fast = fast_cls(p)
        setup = time.process_time() - t0
        ref = Reference(p)
        engine = Sampled(p, fast, ref, sample_nodes(graph, sample_k, seed), model.cfg.n_layers, budget_s)
        try:
            result = run(p, engine)
            finished, kept = True, len(edges_of_mask(result.mask))
        except OutOfBudget:
            finished, kept = False, None
    return Outcome(finished, graph.n_edges, kept, sum(h.tested for h in engine.hooks), engine.hooks, engine.check,
                   setup + engine.fast_seconds, engine.path, engine.stats.passes)


def hook_edges(n_layers: int, n_heads: int, parallel: bool = False) -> list[tuple[str, int, int]]:
    """SPEC 7's receiver hooks of a bridge shape without building it: (hook, edges into it, blocks recomputed)."""
    out = []
    for layer in range(n_layers):
        upstream = 1 + layer * (n_heads + 1)
        for role in "qkv":
            hook = f"blocks.{layer}.attn.hook_{role}_input"
            out.append((hook, n_heads * upstream, n_layers - layer))
        out.append((f"blocks.{layer}.hook_mlp_in", upstream + (0 if parallel else n_heads), n_layers - layer))
    out.append((f"blocks.{n_layers - 1}.hook_out", 1 + n_layers * (n_heads + 1), 0))
    return out
