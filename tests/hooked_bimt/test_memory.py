import torch

from hooked_bimt.memory import PeakMemory


def test_peak_counts_temporaries_and_frees():
    alive = torch.zeros(1000)  # 4,000 bytes alive when the window opens
    with PeakMemory([alive]) as meter:
        a = torch.ones(2000)  # +8,000
        b = a * 2  # +8,000 -> peak 20,000
        del a, b
        c = torch.ones(500)  # +2,000 after the frees
    assert meter.peak == 20_000
    assert meter.live == 6_000
    del c


def test_views_share_their_storage():
    with PeakMemory() as meter:
        a = torch.ones(1000)
        views = [a[1:], a.view(10, 100), a.t() if a.dim() == 2 else a[::2]]
    assert meter.peak == 4_000 and len(views) == 3


def test_backward_and_optimizer_are_seen():
    w = torch.nn.Parameter(torch.ones(100, 100))
    opt = torch.optim.AdamW([w])
    with PeakMemory([w]) as meter:
        (w @ torch.ones(100, 1)).sum().backward()
        opt.step()
    # at least: the gradient and AdamW's two moments, 40,000 bytes each, besides w itself
    assert meter.peak >= 4 * 40_000


def test_training_window_keeps_no_freed_gradient_alive():
    """The meter's set-up must not keep the last step's gradients alive once the next step frees them (a list
    of the start's tensors held through the window did: + one gradient's bytes in every regime's peak)."""
    import weakref

    from bimt_fixtures import mnist
    from hooked_bimt import TrainConfig
    from hooked_bimt.memory import TrainingMemoryMeter
    from hooked_bimt.regimes import REGIMES
    from hooked_bimt.training import Training

    cfg = TrainConfig(widths=(784, 16, 16, 10), steps=24, train_subset=200, test_subset=100, dtype="float64")
    training = Training(REGIMES["l1_local"], cfg, 0, torch.device("cpu"), mnist())
    training.step(0)
    old = [weakref.ref(p.grad) for p in training.model.parameters()]
    freed = []

    def spy(module, args):  # runs after the step's zero_grad(set_to_none=True)
        freed.append(all(r() is None for r in old))

    handle = training.model.register_forward_pre_hook(spy)
    TrainingMemoryMeter().around(training, lambda: training.step(1))
    handle.remove()
    assert freed == [True]


def test_the_meter_hook_meters_its_window_of_the_run():
    """``train(hook=TrainingMemoryMeter())`` reports the peak of a meter opened after the steps before its window,
    over the window's steps, counting what the run holds then: what the study's claim 4 reads."""
    from bimt_fixtures import random_mnist
    from hooked_bimt import TrainConfig, train
    from hooked_bimt.memory import TrainingMemoryMeter, optimizer_tensors
    from hooked_bimt.regimes import REGIMES
    from hooked_bimt.training import Training

    cfg = TrainConfig(widths=(784, 16, 16, 10), steps=16, swap_every=10, eval_every=16, dtype="float64")
    meter = TrainingMemoryMeter()
    assert meter.window(cfg) == range(8, 11)  # memory_window (3) steps: the first swap step (9) and one each side
    data = random_mnist(200)
    result = train("bimt", cfg, data=data, progress=False, hook=meter)
    assert "TorchDispatchMode" in result.metrics["memory_method"]
    training = Training(REGIMES["bimt"], cfg, 0, torch.device("cpu"), data)
    for step in range(8):
        training.step(step)
    params = list(training.model.parameters())
    with PeakMemory(params + [p.grad for p in params] + optimizer_tensors(training.optimizer) + training.scales) as pm:
        del params  # held, it would keep the gradients the next step frees alive
        for step in range(8, 11):
            training.step(step)
    assert result.metrics["peak_memory_bytes"] == pm.peak
    assert "peak_memory_bytes" not in train("bimt", cfg, data=data, progress=False).metrics  # no hook, no meter


def test_storage_bytes_counts_each_storage_once():
    from hooked_bimt.memory import storage_bytes

    a = torch.zeros(100, 10, dtype=torch.float64)  # 8,000 bytes
    b = torch.zeros(7, dtype=torch.float32)  # 28 bytes
    assert storage_bytes([a, a[3:], a.T, b, None, "not a tensor"]) == 8_000 + 28
