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
