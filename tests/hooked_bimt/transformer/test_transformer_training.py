"""Training under the five regimes; tasks; checkpoints loading back as a bridge with the module's logits."""

from __future__ import annotations

import json

import pytest
import torch

from hooked_bimt.checkpoint import CheckpointError
from hooked_bimt.transformer import InductionTask, ModularAdditionTask, TrainConfig, connection_cost, load, save, train
from training_checks import assert_regimes_differ_as_spec_2_says

TINY = TrainConfig(d_model=8, n_head=2, d_mlp=16, steps=24, batch=16, swap_every=8, lambda_=0.05, dtype="float64")
TASK = ModularAdditionTask(p=7, n_prompts=8)


@pytest.fixture(scope="module")
def runs():
    return {r: train(r, TASK, TINY, seed=0) for r in ("vanilla", "l1", "l1_local", "l1_swap", "bimt")}


def test_regimes_penalise_and_swap_as_spec_2_says(runs):
    assert_regimes_differ_as_spec_2_says(runs, TINY.steps, [8, 16, 24])


def test_the_same_seed_gives_the_same_model(runs):
    again = train("bimt", TASK, TINY, seed=0)
    for p, q in zip(runs["bimt"].module.parameters(), again.module.parameters()):
        assert torch.equal(p, q)


def test_lambda_schedule_scales_with_steps():
    cfg = TrainConfig(steps=400, lambda_=1e-3)
    assert [cfg.lambda_at(s) for s in (0, 99, 100, 299, 300, 399)] == pytest.approx([1e-3, 1e-3, 1e-2, 1e-2, 1e-1, 1e-1])


def test_prompts_have_equal_length_and_answers_that_differ():
    for task in (InductionTask(), ModularAdditionTask()):
        assert task.clean.shape == task.corrupted.shape and task.clean.dtype == torch.long
        assert bool((task.clean_labels != task.corrupt_labels).all())
        assert int(task.clean.max()) < task.d_vocab and task.clean.shape[1] <= task.n_ctx
    m = ModularAdditionTask(p=11)
    assert torch.equal(m.clean_labels, (m.clean[:, 0] + m.clean[:, 1]) % 11)
    assert torch.equal(m.corrupted[:, 0], m.clean[:, 0]) and bool((m.corrupted[:, 1] != m.clean[:, 1]).all())
    train_pairs, test_pairs = m.pairs()
    assert len(train_pairs) + len(test_pairs) == 121
    assert not set(map(tuple, train_pairs.tolist())) & set(map(tuple, test_pairs.tolist()))


def test_checkpoint_loads_as_a_bridge_with_the_trained_logits(runs, tmp_path):
    result = runs["bimt"]
    save(result, tmp_path / "m")
    loaded = load(tmp_path / "m")
    tokens = TASK.clean
    want = result.module(tokens).logits.detach()
    torch.testing.assert_close(loaded.bridge(tokens).detach(), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(loaded.module(tokens).logits.detach(), want, rtol=0, atol=1e-12)
    assert loaded.regime.name == "bimt" and loaded.task == TASK and loaded.config == TINY
    with pytest.raises(FileExistsError):
        save(result, tmp_path / "m")
    blob = bytearray((tmp_path / "m" / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (tmp_path / "m" / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load(tmp_path / "m")


def test_load_refuses_another_kind_of_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "mlp"}))
    with pytest.raises(CheckpointError, match="not a BIMT transformer"):
        load(tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"regime": "bimt_original"}, "no transformer version"), ({"regime": "nope"}, "unknown regime"),
    ({"task": "sorting"}, "unknown task")])
def test_bad_arguments_are_refused_before_training(kwargs, match):
    args = {"regime": "bimt", "task": TASK, "config": TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(**args)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible"):
        TrainConfig(d_model=6, n_head=4)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")


def test_the_loss_uses_the_configs_distance_factor_where_the_regime_is_local():
    import dataclasses

    from hooked_bimt.transformer import Trainer

    cfg = dataclasses.replace(TINY, distance_factor=0.5)
    local, plain = Trainer("l1_local", TASK, cfg, seed=0), Trainer("l1_swap", TASK, cfg, seed=0)
    assert local.cost().item() == pytest.approx(connection_cost(local.module, 0.5).item(), rel=1e-12)
    assert plain.cost().item() == pytest.approx(connection_cost(plain.module, 0.0).item(), rel=1e-12)
    assert Trainer("vanilla", TASK, cfg, seed=0).cost is None
