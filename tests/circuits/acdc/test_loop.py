"""``circuits.acdc.loop.run``: SPEC 4's order and rules are the loop's, whatever the engine (a toy ``Decider`` whose
decisions are known in advance), the path each model family takes, options as data, families registering."""

from __future__ import annotations

import pytest
import torch
from conftest import HeadMixer, make_batches, make_mlp

from circuits import acdc, graph_of
from circuits.acdc.loop import Decisions, Node, Problem, Stats, run
from circuits.acdc.options import MLPOptions, Options
from circuits.families import Family, register
from circuits.graph import Edge
from circuits.metrics import logit_diff, resolve
from circuits.patching import check_batches, corrupted_activations, edges_of_mask, full_mask


class Toy:
    """A decider with known answers: sender node s changes nothing iff s % 3 == 0; a live edge from an odd s is
    removed (effect -1), from an even s kept (effect +1). Records what it was asked."""

    path = "toy"

    def __init__(self, p: Problem) -> None:
        self.p, self.stats, self.seen, self.entered = p, Stats(), [], []

    def start(self) -> float:
        return 0.0

    def enter(self, receiver: str) -> None:
        self.entered.append(receiver)

    def unchanged(self, node: Node) -> tuple[torch.Tensor, ...]:
        return tuple(s.senders % 3 == 0 for s in node.spans)

    def decide(self, node: Node, current: float) -> Decisions:
        self.seen.append((node.receiver, node.index, [s.senders.tolist() for s in node.spans]))
        odd = tuple(s.senders % 2 == 1 for s in node.spans)
        return Decisions(tuple(torch.where(o, -1.0, 1.0).double() for o in odd), odd, current)

    def settled(self, node: Node, decisions: Decisions) -> None:
        pass


def _toy_run(threshold: float):
    model = make_mlp(0, widths=(4, 3, 2))
    clean, corrupted = make_batches(0, batch=3, d_in=4)
    graph = graph_of(model)
    p = Problem(model, graph, clean, corrupted_activations(model, corrupted, "resample", graph), resolve("kl"),
                threshold, full_mask(graph), False)
    toy = Toy(p)
    return graph, toy, run(p, toy)


def test_the_loop_owns_the_order_and_the_tie_dead_node_and_clean_up_rules():
    graph, toy, result = _toy_run(threshold=0.0)
    inp, hid_in, hid_out, out = graph.connections[0].sender, graph.connections[0].receiver, \
        graph.connections[1].sender, graph.connections[1].receiver
    assert toy.entered == [out, hid_in]  # receivers from the output backwards
    # output nodes: sender 0 is a tie (effect 0, kept at threshold 0), 1 removed, 2 kept; the decider never sees 0
    assert toy.seen[:2] == [(out, 0, [[1, 2]]), (out, 1, [[1, 2]])]
    # hidden node 1 feeds nothing any more: its inputs go untested; nodes 0 and 2 see senders 1, 2 (0 and 3 are ties)
    assert toy.seen[2:] == [(hid_in, 0, [[1, 2]]), (hid_in, 2, [[1, 2]])]
    want = {Edge(hid_out, s, out, r): e for r in range(2) for s, e in ((0, 0.0), (1, -1.0), (2, 1.0))}
    want.update({Edge(inp, s, hid_in, r): e for r in (0, 2) for s, e in ((0, 0.0), (1, -1.0), (2, 1.0), (3, 0.0))})
    assert list(result.effects.items()) == list(want.items())  # sender order within each node: the test order
    kept = {e for e, v in want.items() if v >= 0.0}  # removed iff effect < threshold (0)
    assert edges_of_mask(result.mask) == kept and result.path == "toy"


def test_tie_edges_are_removed_above_a_zero_threshold_and_the_clean_up_cascades():
    graph, toy, result = _toy_run(threshold=0.5)
    hid_out, out = graph.connections[1].sender, graph.connections[1].receiver
    # output nodes keep only sender 2 (0: a tie, now removed; 1: removed): hidden nodes 0 and 1 are dead
    assert [(rec, r) for rec, r, _ in toy.seen] == [(out, 0), (out, 1), (graph.connections[0].receiver, 2)]
    assert edges_of_mask(result.mask) == {Edge(hid_out, 2, out, 0), Edge(hid_out, 2, out, 1),
                                         Edge(graph.connections[0].sender, 2, graph.connections[0].receiver, 2)}


def test_every_circuit_records_the_path_per_model_family(batches):
    mlp = make_mlp(1)
    assert acdc(mlp, *batches, threshold=1e-3).settings["path"] == "mlp.compiled"  # KL, float64
    assert acdc(mlp, *batches, threshold=1e-3, dtype=None).settings["path"] == "mlp.compiled"  # the model is float64
    labels = torch.zeros(len(batches[0]), dtype=torch.long), torch.ones(len(batches[0]), dtype=torch.long)
    assert acdc(mlp, *batches, threshold=1e-3, metric=logit_diff(*labels)).settings["path"] == "mlp.speculative"
    slow = Options(mlp=MLPOptions(compiled=False))
    assert acdc(mlp, *batches, threshold=1e-3, options=slow).settings["path"] == "mlp.speculative"
    assert acdc(mlp, *batches, threshold=1e-3, engine="reference").settings["path"] == "reference"
    mixer = HeadMixer(seed=1)  # a graph no fast engine knows: the reference runs, and says so
    clean, corrupted = make_batches(2, batch=5, d_in=4, shape=(3, 2))
    assert acdc(mixer, clean, corrupted, threshold=1e-3).settings["path"] == "reference"


def test_options_are_checked_before_any_work(mlp, batches):
    with pytest.raises(TypeError, match="options must be circuits.acdc.options.Options"):
        acdc(mlp, *batches, threshold=1e-3, options={"compiled": False})
    with pytest.raises(Exception):  # frozen: options are data, not a switchboard
        Options().strict = False  # type: ignore[misc]


class _Boxed(torch.nn.Module):
    """A model that declares no graph: only a registered family can give it one."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_mlp(3)

    def forward(self, x):
        return self.inner(x)


def test_a_registered_family_builds_the_graph_and_checks_the_inputs():
    def refuse_negative(model, clean, corrupted):
        if bool((clean < -10).any()):
            raise ValueError("toy family: inputs below -10 are not patched")

    register(Family("boxed_mlp", lambda m: isinstance(m, _Boxed), lambda m: graph_of(m.inner),
                    check_inputs=refuse_negative))
    boxed = _Boxed().double()
    graph = graph_of(boxed)
    assert graph.family == "boxed_mlp" and graph.signature() == graph_of(boxed.inner).signature()
    clean, corrupted = make_batches(4, batch=2)
    check_batches(boxed, clean, corrupted)
    with pytest.raises(ValueError, match="toy family"):
        check_batches(boxed, clean - 100.0, corrupted)
    with pytest.raises(TypeError, match="Family"):
        register("boxed_mlp")  # type: ignore[arg-type]
