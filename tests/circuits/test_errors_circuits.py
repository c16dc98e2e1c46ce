"""Issue 13, API half (circuits): every bad input is refused by name before any work; files are checked."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch
from conftest import make_batches, make_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from circuits import Circuit, Edge, acdc, eap, eap_then_acdc, evaluate, graph_of, node_patching, run_circuit
from circuits.metrics import logit_diff
from hooked_bimt._compat import HookedRootModule, HookPoint


def _full(model):
    return Circuit.full(graph_of(model), settings={"algorithm": "acdc"})


def _nd(model, clean, corrupted):
    return node_patching(model, clean, corrupted, logit_diff=lambda logits: logits[:, 0] - logits[:, 1])


# Every public entry point that runs a model on a clean/corrupted pair.
ENTRY_POINTS = {
    "acdc": lambda m, c, d: acdc(m, c, d, threshold=0.01),
    "eap": lambda m, c, d: eap(m, c, d),
    "evaluate": lambda m, c, d: evaluate(m, _full(make_mlp(0)), c, d),
    "run_circuit": lambda m, c, d: run_circuit(m, _full(make_mlp(0)), c, d),
    "node_patching": _nd,
}


def _inf_clean():
    c, d = make_batches(0)
    c[1, 2] = float("inf")
    return make_mlp(0), c, d, "clean contains infinite"


def _inf_corrupted():
    c, d = make_batches(0)
    d[0, 0] = -float("inf")
    return make_mlp(0), c, d, "corrupted contains infinite"


def _nan_weight():
    m = make_mlp(0)
    with torch.no_grad():
        m.linears[1].weight[0, 0] = float("nan")
    return (m, *make_batches(0), "parameter 'linears.1.weight' holds NaN")


class _NoSetup(HookedRootModule):
    """A hooked model whose author forgot ``self.setup()``."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3).double()
        self.hook_in, self.hook_logits = HookPoint(), HookPoint()

    def forward(self, x):
        return self.hook_logits(self.lin(self.hook_in(x)))

    def circuit_graph(self):
        return make_mlp(0).circuit_graph()


def _no_setup():
    return (_NoSetup(), *make_batches(0), r"no hook points registered: call self.setup\(\)")


def _plain_module():
    return (nn.Sequential(nn.Linear(5, 3)).double(), *make_batches(0), "no TransformerLens hook points")


BAD = {"inf_clean": _inf_clean, "inf_corrupted": _inf_corrupted, "nan_weight": _nan_weight,
       "forgot_setup": _no_setup, "plain_module": _plain_module}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(BAD))
def test_bad_model_or_input_is_refused_before_any_forward_pass(entry, case):
    """+inf inputs, NaN weights, a model without setup() or a plain nn.Module: a named error, and the model
    never ran (a forward hook counts calls)."""
    model, clean, corrupted, message = BAD[case]()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises((ValueError, TypeError), match=message):
        ENTRY_POINTS[entry](model, clean, corrupted)
    assert calls == []


@pytest.mark.parametrize(
    "labels, message",
    [(5, r"one label per example \(6 of them\).*torch.full"), (torch.tensor(2), "single value"),
     ([0, 1, 2, -1, 0, 1], r"0..2; got \[-1\]"), ([0, -2, 1, 1, 0, 0], r"got \[-2\]"),
     ([0, 1, 3, 1, 0, 0], r"got \[3\]")],
    ids=["scalar-int", "0-d-tensor", "minus-1", "minus-2", "too-large"],
)
@pytest.mark.parametrize("which", ["clean_labels", "corrupt_labels"])
def test_evaluate_refuses_bad_labels(labels, message, which):
    """A scalar label was an IndexError; -1 / -2 silently indexed from the end."""
    model, (clean, corrupted) = make_mlp(0), make_batches(0)
    good = torch.zeros(6, dtype=torch.long)
    kwargs = {"clean_labels": good, "corrupt_labels": good, which: labels}
    with pytest.raises(ValueError, match=f"{which}.*{message}" if "single" not in message else message):
        evaluate(model, _full(model), clean, corrupted, **kwargs)


@pytest.mark.parametrize("bad", [-1, -2])
@pytest.mark.parametrize("which", ["clean_labels", "corrupt_labels"])
def test_logit_diff_metric_refuses_negative_labels(bad, which):
    labels = {"clean_labels": torch.tensor([0, 1, 2]), "corrupt_labels": torch.tensor([1, 2, 0])}
    labels[which] = torch.tensor([0, bad, 1])
    with pytest.raises(ValueError, match=f"{which} must be class indices >= 0, got {bad}"):
        logit_diff(**labels)


def test_evaluate_accepts_every_valid_label():
    model, (clean, corrupted) = make_mlp(0), make_batches(0)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    out = evaluate(model, _full(model), clean, corrupted, clean_labels=labels, corrupt_labels=labels.flip(0))
    with torch.no_grad():
        logits = model(clean)
    rows = torch.arange(6)
    assert out["logit_diff_full"] == pytest.approx(float((logits[rows, labels] - logits[rows, labels.flip(0)]).mean()))


@pytest.mark.parametrize("metric_kind", ["per_example", "per_class"])
def test_eap_refuses_a_metric_that_is_not_one_number(metric_kind):
    model, (clean, corrupted) = make_mlp(0), make_batches(0)
    per_example = {"per_example": lambda logits, full: (logits - full).pow(2).sum(-1),
                   "per_class": lambda logits, full: (logits - full).pow(2).mean(0)}[metric_kind]
    with pytest.raises(ValueError, match=r"eap needs a metric returning one number.*shape \((6|3),\).*mean\(\)"):
        eap(model, clean, corrupted, per_example)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_eap_then_acdc_refuses_an_ablation_eap_does_not_score(ablation):
    model, (clean, corrupted) = make_mlp(0), make_batches(0)
    with pytest.raises(ValueError, match=f"resample ablation only.*ablation='{ablation}'"):
        eap_then_acdc(model, clean, corrupted, top_n=5, threshold=0.01, ablation=ablation)


# ---------------------------------------------------------------------------- repr
@pytest.mark.parametrize("algorithm", ["acdc", "full", "empty"])
def test_repr_is_one_short_line_and_html_a_small_table(algorithm):
    """A 600-edge circuit printed 163,179 characters; now one line naming edges, sparsity, algorithm, model."""
    model = make_mlp(0, widths=(20, 20, 20, 10))  # 20*20*2 + 20*10 = 1000 edges
    graph = graph_of(model)
    clean, corrupted = make_batches(0, d_in=20)
    circuit = {"acdc": lambda: acdc(model, clean, corrupted, threshold=1e-4),
               "full": lambda: Circuit.full(graph, settings={"algorithm": "manual"}),
               "empty": lambda: Circuit.empty(graph)}[algorithm]()
    text = repr(circuit)
    assert "\n" not in text and len(text) < 160 and str(circuit) == text
    assert f"{circuit.n_edges}/1000 edges" in text and f"sparsity {circuit.sparsity:.3f}" in text
    assert ("algorithm=acdc" in text and "HookedMLP(20-20-20-10)" in text) if algorithm == "acdc" else True
    page = circuit._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == 7 and len(page) < 2000
    assert f"{circuit.n_edges} of 1000" in page


# ---------------------------------------------------------------------------- circuit files
def _saved(tmp_path):
    model, (clean, corrupted) = make_mlp(0), make_batches(0)
    circuit = acdc(model, clean, corrupted, threshold=0.01)
    path = circuit.save(tmp_path / "c.json")
    return circuit, path


def _edit(path, change):
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


BAD_FILES = {
    "no-edges": (lambda p: _edit(p, lambda d: d.pop("edges")), r"no 'edges'"),
    "3-field-edge": (lambda p: _edit(p, lambda d: d["edges"].__setitem__(0, d["edges"][0][:3])), "an edge must be a list"),
    "top-level-list": (lambda p: p.write_text("[1, 2, 3]"), "top level is a list"),
    "non-utf8": (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not UTF-8"),
    "index-0.9": (lambda p: _edit(p, lambda d: d["edges"][0].__setitem__(1, 0.9)), "node index 0.9"),
    "tampered-edge": (lambda p: _edit(p, lambda d: d["edges"].pop()), "does not match its recorded SHA-256"),
    "tampered-number": (lambda p: p.write_text(p.read_text().replace('"threshold": 0.01', '"threshold": 0.02')),
                        "does not match its recorded SHA-256"),
    "not-json": (lambda p: p.write_text("{oops"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_circuit_load_refuses_a_bad_file_by_name(tmp_path, case):
    _, path = _saved(tmp_path)
    damage, message = BAD_FILES[case]
    damage(path)
    with pytest.raises(ValueError, match=message) as err:
        Circuit.load(path)
    assert str(path) in str(err.value)


def test_circuit_hash_is_sha256_of_canonical_content(tmp_path):
    """Independent of the code's helper: the recorded hash is SHA-256 of the other keys, sorted, compact."""
    circuit, path = _saved(tmp_path)
    d = json.loads(path.read_text())
    body = json.dumps({k: v for k, v in d.items() if k != "sha256"}, sort_keys=True, separators=(",", ":"))
    assert d["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    loaded = Circuit.load(path)
    assert loaded.edges == circuit.edges and loaded.effects == circuit.effects


def test_circuit_file_without_hash_loads_with_a_warning(tmp_path):
    circuit, path = _saved(tmp_path)
    _edit(path, lambda d: d.pop("sha256"))
    with pytest.warns(UserWarning, match="saved before circuits carried a content hash"):
        assert Circuit.load(path).edges == circuit.edges


@pytest.mark.parametrize("overwrite", [False, True])
def test_circuit_save_never_overwrites_without_opt_in(tmp_path, overwrite):
    circuit, path = _saved(tmp_path)
    other = Circuit.empty(graph_of(make_mlp(0)), settings={"algorithm": "other"})
    if overwrite:
        other.save(path, overwrite=True)
        assert Circuit.load(path).n_edges == 0
    else:
        before = path.read_bytes()
        with pytest.raises(FileExistsError, match="overwrite=True"):
            other.save(path)
        assert path.read_bytes() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Circuit.load(path)  # a freshly saved file carries its hash: no warning
    assert Edge("hook_in", 0, "blocks.0.hook_pre", 0) in Circuit.full(graph_of(make_mlp(0)))


_GRAPH_EDGES = sorted(graph_of(make_mlp(0)).edges())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.sets(st.sampled_from(_GRAPH_EDGES)), victim=st.integers(0, 10**6), delta=st.sampled_from([1e-12, 1.0]))
def test_any_circuit_round_trips_and_any_edited_value_is_caught(tmp_path_factory, keep, victim, delta):
    """Property: save/load is the identity on edges and effects; changing any one effect, or dropping any
    one edge, makes load refuse the file."""
    graph = graph_of(make_mlp(0))
    effects = {e: float(i) / 7 for i, e in enumerate(sorted(keep))}
    circuit = Circuit.from_edges(graph, keep, effects=effects, settings={"algorithm": "test"})
    path = tmp_path_factory.mktemp("c") / "c.json"
    circuit.save(path)
    loaded = Circuit.load(path)
    assert loaded.edges == circuit.edges and loaded.effects == circuit.effects
    if not keep:
        return
    d = json.loads(path.read_text())
    i = victim % len(d["edges"])
    if victim % 2:
        d["effects"][i][4] += delta
    else:
        d["edges"].pop(i)
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        Circuit.load(path)
