import dataclasses

import pytest
import torch

from bimt_fixtures import mnist, random_mnist
from hooked_bimt import REGIMES, TrainConfig, TrainResult, connection_cost, train
from hooked_bimt.cost import add_cost_grad, cost_scales
from hooked_bimt.memory import TrainingMemoryMeter

TINY = dataclasses.replace(TrainConfig.quick(), steps=60, swap_every=20, eval_every=30, train_subset=500, test_subset=200)


@pytest.fixture(scope="module")
def quick_results():
    return {name: train(name, TrainConfig.quick(), seed=0, data=mnist(), progress=False, hook=TrainingMemoryMeter())
            for name in REGIMES}


@pytest.mark.parametrize("regime", list(REGIMES))
def test_each_regime_beats_chance_widely_on_quick_preset(quick_results, regime):
    result = quick_results[regime]
    assert result.metrics["test_accuracy"] > 0.8  # chance is 0.1
    assert result.regime.name == regime and result.metrics["steps"] == TrainConfig.quick().steps
    assert (result.metrics["swaps"] > 0) == REGIMES[regime].swaps


def test_history_and_metrics_are_complete(quick_results):
    result = quick_results["bimt"]
    cfg = TrainConfig.quick()
    assert [row["step"] for row in result.history] == list(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every))
    assert set(result.history[0]) == {"step", "loss", "task_loss", "connection_cost", "lambda", "test_accuracy", "swaps"}
    assert [row["lambda"] for row in result.history] == pytest.approx([0.1, 1.0, 1.0])
    m = result.metrics
    assert m["peak_memory_bytes"] > 0 and "TorchDispatchMode" in m["memory_method"]
    assert 0 < m["seconds_per_step"] < m["train_seconds"] and m["inference_ms_per_batch"] > 0


def test_local_cost_makes_networks_cheaper(quick_results):
    """BIMT's cost (A = 2) ends lower than vanilla's: the regimes do differ in what they optimise."""
    costs = {name: r.metrics["connection_cost"] for name, r in quick_results.items()}
    assert costs["bimt"] < costs["l1"] < costs["vanilla"]


def test_same_seed_is_bit_identical_and_other_seed_differs():
    a, b, c = (train("bimt", TINY, seed=s, data=mnist(), progress=False) for s in (1, 1, 2))
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.model.linears[0].weight, c.model.linears[0].weight)


def test_direct_cost_gradient_equals_autograd():
    torch.manual_seed(0)
    from hooked_bimt import HookedMLP

    model = HookedMLP((16, 9, 5)).double()
    factors, lam = [2.0, 0.0], 0.3
    connection_cost(model, factors, 0.5).mul(lam).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad.zero_()
    add_cost_grad(model, cost_scales(model, factors, 0.5), lam, 0.5)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, atol=1e-15, rtol=1e-12)


def test_result_save_load_round_trip(tmp_path):
    result = train("l1_swap", TINY, seed=4, data=mnist(), progress=False)
    result.save(tmp_path)
    back = TrainResult.load(tmp_path)
    assert back.config == TINY and back.seed == 4 and back.regime == REGIMES["l1_swap"] and back.finished
    assert back.history == result.history and back.metrics == result.metrics
    for pa, pb in zip(result.model.state_dict().values(), back.model.state_dict().values()):
        assert torch.equal(pa, pb)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown regime 'bimtt'.*vanilla"):
        train("bimtt", TINY, data=mnist(), progress=False)
    with pytest.raises(TypeError, match="MNISTSplit"):
        train("bimt", TINY, data=(torch.zeros(3), torch.zeros(3)), progress=False)
    with pytest.raises(TypeError, match="TrainConfig"):
        train("bimt", {"steps": 3}, data=mnist(), progress=False)


def test_the_package_attribute_train_is_the_function_and_importing_the_package_loads_no_torch():
    """No submodule is called ``train``, so the lazy attribute needs no guard against the import system."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys\nimport hooked_bimt\nprint('TORCH', 'torch' in sys.modules)\n"
             "import hooked_bimt.training, hooked_bimt.train_config\nfrom hooked_bimt import TrainConfig, train\n"
             "print('SAME', train is hooked_bimt.train is hooked_bimt.training.train, "
             "TrainConfig is hooked_bimt.train_config.TrainConfig)")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["TORCH", "False", "SAME", "True", "True"], out.stderr


def test_a_steps_hook_runs_once_around_its_window_and_adds_its_metrics():
    """The loop's one seam: ``around`` opens after the steps before the window, ``run()`` runs the window's steps,
    an evaluation due inside the window follows it, and the dict returned joins the metrics."""
    seen = []

    class Spy:
        def window(self, config):
            return range(3, 6)

        def around(self, training, run):
            def adam_steps():
                return int(next(iter(training.optimizer.state.values()))["step"])

            seen.append((adam_steps(), len(training.history)))
            run()
            seen.append((adam_steps(), len(training.history)))
            return {"spy": "ran"}

    config = dataclasses.replace(TINY, steps=8, eval_every=2)
    result = train("l1", config, data=random_mnist(100), progress=False, hook=Spy())
    assert seen == [(3, 1), (6, 1)]
    assert [row["step"] for row in result.history] == [2, 4, 6, 8] and result.metrics["spy"] == "ran"
