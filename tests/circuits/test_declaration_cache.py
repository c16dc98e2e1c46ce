"""A declaration that passed ``check_declaration`` is not checked again while nothing it depends on changed
(issue 25): every change that could matter re-runs the check, and the named errors still come."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import pytest
import torch
from conftest import make_batches, make_mlp
from test_declaration import CASES, _lie

from circuits import acdc, eap, graph_of, node_patching
from circuits.protocol_check import DECLARATION_ROWS, check_declaration


def _counting(model):
    """``model`` with a permanent hook counting the declaration check's forward passes (``DECLARATION_ROWS`` rows)."""
    seen: list[int] = []
    model.hook_in.add_hook(lambda act, hook: seen.append(act.shape[0]))
    return model, lambda: sum(n == DECLARATION_ROWS for n in seen)


def _check(model, clean, corrupted, **kw):
    return check_declaration(model, graph_of(model), clean, corrupted, **kw)


CALLERS = {
    "check_declaration": lambda m, c, x: [(k.sender, k.receiver) for k in _check(m, c, x).connections],
    "eap": lambda m, c, x: eap(m, c, x),
    "eap-ig": lambda m, c, x: eap(m, c, x, steps=2),
    "acdc": lambda m, c, x: acdc(m, c, x, threshold=0.01),
    "node_patching": lambda m, c, x: node_patching(m, c, x, lambda logits: logits[:, 0] - logits[:, 1]),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_a_repeated_call_on_an_unchanged_model_skips_the_check(caller):
    model, checks = _counting(make_mlp(0))
    clean, corrupted = make_batches(0, batch=6)
    first = CALLERS[caller](model, clean, corrupted)
    assert checks() == 2  # two forward passes of a few rows
    again = CALLERS[caller](model, clean, corrupted)
    assert checks() == 2
    if caller.startswith(("eap", "check")):  # (acdc's Circuit carries its wall-clock time)
        assert again == first


def _swap_linear(model):
    old = model.linears[1]
    new = torch.nn.Linear(old.in_features, old.out_features).double()
    model.linears[1] = new


def _load_state(model):
    state = {k: v.clone() * 1.1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict(state)


def _other_code(model):
    """The same map declared through other code: a new declaration, checked again."""
    g = graph_of(model)
    lin = model.linears[0]
    first = dataclasses.replace(g.connections[0], contribute=lambda a: torch.nn.functional.linear(a, lin.weight))
    _lie(model, dataclasses.replace(g, connections=(first,) + g.connections[1:]))


CHANGES = {
    # name: (change to the model, change to the batches)
    "weight changed in place": (lambda m: torch.no_grad()(lambda: m.linears[0].weight.mul_(1.5))(), None),
    "weight's data replaced": (lambda m: setattr(m.linears[0].weight, "data", m.linears[0].weight.data * 2), None),
    "buffer changed in place": (lambda m: m.in_perm.copy_(m.in_perm), None),
    "load_state_dict": (_load_state, None),
    "module swapped": (_swap_linear, None),
    "dtype": (lambda m: m.float(), lambda x: x.float()),
    "training mode": (lambda m: m.train(not m.training), None),
    "permanent hook added": (lambda m: m.blocks[0].hook_pre.add_hook(lambda a, hook: None), None),
    "plain attribute": (lambda m: setattr(m, "activation", "tanh"), None),
    "declaration": (_other_code, None),
    "other rows": (None, lambda x: x + 1.0),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_that_could_matter_runs_the_check_again(change):
    model, checks = _counting(make_mlp(0))
    clean, corrupted = make_batches(0, batch=6)
    _check(model, clean, corrupted)
    _check(model, clean, corrupted)
    assert checks() == 2
    to_model, to_batch = CHANGES[change]
    if to_model is not None:
        to_model(model)
    if to_batch is not None:
        clean, corrupted = to_batch(clean), to_batch(corrupted)
    _check(model, clean, corrupted)
    assert checks() == 4, change
    _check(model, clean, corrupted)
    assert checks() == 4, change  # remembered again


def test_other_tolerance_and_reuse_false_run_the_check():
    model, checks = _counting(make_mlp(0))
    clean, corrupted = make_batches(0, batch=6)
    _check(model, clean, corrupted)
    _check(model, clean, corrupted, rtol=1e-7)
    assert checks() == 4
    _check(model, clean, corrupted, rtol=1e-7, reuse=False)
    assert checks() == 6


@pytest.mark.parametrize("how", ["indexing under no_grad", "through .data"])
@pytest.mark.parametrize("caller", ["eap", "acdc"])
def test_nan_weights_set_after_a_remembered_pass_are_refused_by_name(caller, how):
    model = make_mlp(0)
    clean, corrupted = make_batches(0, batch=6)
    CALLERS[caller](model, clean, corrupted)
    if how == "through .data":  # invisible to the version counter: finiteness is checked on every call
        model.linears[1].weight.data[0, 0] = float("nan")
    else:
        with torch.no_grad():
            model.linears[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"parameter 'linears\.1\.weight' holds NaN or infinite values"):
        CALLERS[caller](model, clean, corrupted)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lie_declared_after_a_remembered_pass_is_refused_naming_the_receiver(case):
    factory, lie, hook, reason = CASES[case]
    model = factory()
    clean, corrupted = make_batches(1, batch=6, d_in=4 if case == "missing" else 5)
    eap(model, clean, corrupted)
    _lie(model, lie(model))
    with pytest.raises(ValueError) as err:
        eap(model, clean, corrupted)
    assert err.value.args[0].startswith(hook + ":") and reason in err.value.args[0], err.value.args[0]


def test_a_module_swapped_under_a_fixed_declaration_is_refused_naming_the_receiver():
    """The declaration still reads the old layer's weights; the forward pass runs the new one."""
    model = make_mlp(0)
    clean, corrupted = make_batches(0, batch=6)
    _lie(model, graph_of(model))
    eap(model, clean, corrupted)
    _swap_linear(model)
    with pytest.raises(ValueError, match=r"^blocks\.1\.hook_pre: the declared contributions do not sum"):
        eap(model, clean, corrupted)


def test_a_dtype_change_is_checked_in_the_new_dtype():
    model, checks = _counting(make_mlp(0))
    clean, corrupted = make_batches(0, batch=6)
    eap(model, clean, corrupted)
    model.float()
    scores = eap(model, clean, corrupted)  # float64 batches follow the model (check_batches)
    assert checks() == 4
    fresh = make_mlp(0).float()
    assert scores == eap(fresh, clean, corrupted)


def test_a_callable_of_unknown_kind_is_never_remembered():
    class Contribute:  # not a function, method, partial or module: its key cannot be formed
        def __init__(self, lin):
            self.lin = lin

        def __call__(self, a):
            return a @ self.lin.weight.T

    model, checks = _counting(make_mlp(0))
    g = graph_of(model)
    conns = (dataclasses.replace(g.connections[0], contribute=Contribute(model.linears[0])),) + g.connections[1:]
    _lie(model, dataclasses.replace(g, connections=conns))
    clean, corrupted = make_batches(0, batch=6)
    _check(model, clean, corrupted)
    _check(model, clean, corrupted)
    assert checks() == 4


def test_a_remembered_pass_keeps_no_model_alive():
    model = make_mlp(0)
    _check(model, *make_batches(0, batch=6))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_bridge_is_checked_once_for_repeated_calls(monkeypatch):
    """Building a bridge's graph switches its gated hooks on and runs it (``graph_of``): none of that counts as a
    change; setting a weight to another value does."""
    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    from circuits import protocol_check

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=10, n_positions=8)
    bridge = build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                      tokenizer=None, device="cpu")
    calls = []
    verify = protocol_check._verify
    monkeypatch.setattr(protocol_check, "_verify", lambda *a: calls.append(1) or verify(*a))
    gen = torch.Generator().manual_seed(1)
    clean, corrupted = torch.randint(0, 10, (6, 5), generator=gen), torch.randint(0, 10, (6, 5), generator=gen)
    first = eap(bridge, clean, corrupted)
    assert eap(bridge, clean, corrupted) == first and eap(bridge, clean, corrupted, steps=2) and len(calls) == 1
    with torch.no_grad():
        next(bridge.parameters()).mul_(1.01)
    eap(bridge, clean, corrupted)
    assert len(calls) == 2
