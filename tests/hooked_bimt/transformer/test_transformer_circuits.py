"""A trained BIMT transformer's bridge works with every ``circuits`` function and the circuits found mean something."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import circuits
from hooked_bimt.transformer import ModularAdditionTask, TrainConfig, train



@pytest.fixture(scope="module")
def trained():
    """``TrainConfig.quick()`` in float64 (exact comparisons) on a + b mod 11."""
    config = dataclasses.replace(TrainConfig.quick(), dtype="float64")
    return train("bimt", ModularAdditionTask(p=11, n_prompts=24), config, seed=0)


def _logit_diff(logits, task) -> float:
    last = logits[:, -1]
    rows = torch.arange(len(last))
    return (last[rows, task.clean_labels] - last[rows, task.corrupt_labels]).mean().item()


def _recovery(bridge, circuit, task) -> float:
    """(LD_circuit - LD_corrupted) / (LD_full - LD_corrupted), SPEC 5, from plain forward passes for the ends."""
    with torch.no_grad():
        full, corrupted = _logit_diff(bridge(task.clean), task), _logit_diff(bridge(task.corrupted), task)
        got = _logit_diff(circuits.run_circuit(bridge, circuit, task.clean, task.corrupted), task)
    return (got - corrupted) / (full - corrupted)


def test_the_quick_bimt_model_learns_modular_addition(trained):
    assert trained.accuracy > 0.8  # chance is 1/11
    assert sum(n for _, n in trained.history["swaps"]) > 0


def test_acdc_fast_equals_reference_on_the_trained_bridge(trained):
    task = trained.task
    kw = dict(threshold=0.05, metric=task.metric)
    fast = circuits.acdc(trained.bridge, task.clean, task.corrupted, engine="fast", **kw)
    ref = circuits.acdc(trained.bridge, task.clean, task.corrupted, engine="reference", **kw)
    assert fast.edges == ref.edges
    assert 0 < fast.n_edges < fast.n_total_edges


def test_eap_ig_circuit_recovers_more_than_random_circuits_of_its_size(trained):
    task, bridge = trained.task, trained.bridge
    scores = circuits.eap(bridge, task.clean, task.corrupted, metric=task.metric, steps=8)
    n = max(1, len(scores) // 5)
    found = circuits.circuit_from_scores(scores, bridge, top_n=n)
    gen = torch.Generator().manual_seed(0)
    edges = list(scores)
    random = []
    for _ in range(10):
        pick = torch.randperm(len(edges), generator=gen)[:n].tolist()
        random.append(_recovery(bridge, circuits.circuit_from_scores({edges[i]: 1.0 for i in pick}, bridge, top_n=n), task))
    got = _recovery(bridge, found, task)
    print(f"EAP-IG top-{n} of {len(edges)}: recovery {got:.3f}; random: max {max(random):.3f}")
    assert got > max(random)
