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
    from hooked_bimt.regimes import REGIMES
    from hooked_bimt.training import _Trainer

    cfg = TrainConfig(widths=(784, 16, 16, 10), steps=24, train_subset=200, test_subset=100, dtype="float64")
    trainer = _Trainer(REGIMES["l1_local"], cfg, 0, torch.device("cpu"), mnist())
    trainer.step(0)
    old = [weakref.ref(p.grad) for p in trainer.model.parameters()]
    freed, forward = [], trainer.model.forward

    def spy(x):  # runs after the step's zero_grad(set_to_none=True)
        freed.append(all(r() is None for r in old))
        return forward(x)

    trainer.model.forward = spy
    trainer.measured_steps(range(1, 2))
    assert freed == [True]


def test_storage_bytes_counts_each_storage_once():
    from hooked_bimt.memory import storage_bytes

    a = torch.zeros(100, 10, dtype=torch.float64)  # 8,000 bytes
    b = torch.zeros(7, dtype=torch.float32)  # 28 bytes
    assert storage_bytes([a, a[3:], a.T, b, None, "not a tensor"]) == 8_000 + 28
