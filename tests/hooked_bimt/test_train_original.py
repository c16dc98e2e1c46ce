"""Training under the ``*_original`` regimes (issue 14): epoch batches, ring phase, moments, search."""

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bimt_fixtures import mnist
from hooked_bimt import TrainConfig, TrainResult, train
from hooked_bimt.batches import batch_indices

SMALL = dataclasses.replace(
    TrainConfig.quick(), widths=(784, 16, 16, 10), steps=40, swap_every=20, eval_every=40,
    train_subset=300, test_subset=200, memory_window=1, dtype="float64",
)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), batch=st.integers(1, 25), seed=st.integers(0, 1000))
def test_epoch_batches_use_every_example_once_per_epoch(n, batch, seed):
    it = batch_indices(n, batch, "epochs", torch.Generator().manual_seed(seed))
    per_epoch = -(-n // batch)
    for _ in range(2):
        epoch = [next(it) for _ in range(per_epoch)]
        assert all(len(b) == batch for b in epoch[:-1]) and 1 <= len(epoch[-1]) <= batch
        assert sorted(torch.cat(epoch).tolist()) == list(range(n))


def test_batch_mode_rejects_unknown():
    with pytest.raises(ValueError, match="batch mode"):
        next(batch_indices(10, 2, "shuffle", torch.Generator()))


def _training_rows(regime, config):
    """The training examples each step saw (indices into the training subset), by recording the inputs
    of the forward passes run with gradients on: a ``StepsHook`` around every step."""
    seen = []

    def record(module, args):
        if torch.is_grad_enabled():
            seen.append(args[0].detach().clone())

    class Record:
        def window(self, config):
            return range(config.steps)

        def around(self, training, run):
            handle = training.model.register_forward_pre_hook(record)
            run()
            handle.remove()
            return {}

    train(regime, config, seed=0, data=mnist(), progress=False, hook=Record())
    rows = {r.numpy().tobytes(): i for i, r in enumerate(mnist()[0].flat()[: config.train_subset].double())}
    assert len(rows) == config.train_subset  # distinct images, so an input row names its example
    return [[rows[r.numpy().tobytes()] for r in batch] for batch in seen]


def test_original_regime_shuffles_the_training_set_each_epoch():
    cfg = dataclasses.replace(SMALL, steps=6, batch_size=100, swap_every=1000, eval_every=6)
    batches = _training_rows("bimt_original", cfg)
    first, second = sum(batches[:3], []), sum(batches[3:], [])
    assert sorted(first) == sorted(second) == list(range(300))
    assert first != second and first != list(range(300))
    drawn = _training_rows("bimt_original", dataclasses.replace(cfg, batches="replacement"))
    assert len(set(sum(drawn[:3], []))) < 300  # with replacement: repeats within an epoch


def test_bimt_original_trains_end_to_end_and_round_trips(tmp_path):
    result = train("bimt_original", SMALL, seed=0, data=mnist(), progress=False)
    model = result.model
    assert result.metrics["swaps"] > 0 and result.metrics["test_accuracy"] > 0.3  # chance is 0.1
    angle = 2 * math.pi * (model.out_perm.double() + 0.5) / 10  # the original's ring phase, slots via out_perm
    ring = torch.stack([0.5 + 0.25 * angle.cos(), 0.5 + 0.25 * angle.sin()], 1)
    torch.testing.assert_close(model.coords(3), ring)
    back = TrainResult.load(result.save(tmp_path / "run"))
    x = mnist()[1].flat()[:20].double()
    assert back.regime.name == "bimt_original" and back.config == SMALL
    torch.testing.assert_close(back.model(x), model(x), atol=0, rtol=0)
    torch.testing.assert_close(back.model.coords(3), model.coords(3), atol=0, rtol=0)


def test_moments_option_and_the_brute_force_search_in_training():
    """moved vs in place changes training after a swap; the claim-4 benchmark's brute-force search
    (``benchmarks/_brute_relocate.py``, a ``Training`` subclass) changes nothing."""
    from benchmarks._brute_relocate import BruteForceTraining
    from hooked_bimt.regimes import REGIMES

    runs = {
        key: train("l1_swap_original", dataclasses.replace(SMALL, **opts), seed=1, data=mnist(), progress=False)
        for key, opts in {"in_place": {}, "moved": {"original_moments": "moved"}}.items()
    }
    runs["brute"] = BruteForceTraining(REGIMES["l1_swap_original"], SMALL, 1, torch.device("cpu"), mnist()).run()
    weights = {k: r.model.linears[0].weight for k, r in runs.items()}
    assert runs["in_place"].metrics["swaps"] > 0
    assert not torch.allclose(weights["in_place"], weights["moved"], atol=1e-6)
    assert torch.equal(weights["in_place"], weights["brute"])
    assert runs["in_place"].metrics["swaps"] == runs["brute"].metrics["swaps"]


def test_cached_cost_scales_follow_output_swaps():
    """With A on the last layer in the loss, the cached S_l = A D_l + y* is rebuilt after an output swap."""
    from hooked_bimt.regimes import REGIMES
    from hooked_bimt.training import Training

    cfg = dataclasses.replace(SMALL, last_layer_distance_factor=2.0)
    trainer = Training(REGIMES["bimt_original"], cfg, 0, torch.device("cpu"), mnist())
    for step in range(cfg.swap_every):
        trainer.step(step)
    model = trainer.model
    assert not torch.equal(model.out_perm, torch.arange(10))  # the outputs moved
    for l, scale in enumerate(trainer.scales):
        d = (model.coords(l + 1)[:, None, :] - model.coords(l)[None, :, :]).abs().sum(-1)
        torch.testing.assert_close(scale, 2.0 * d + cfg.y_star, atol=1e-12, rtol=0)
