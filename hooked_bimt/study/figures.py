"""The study's figures (b)-(f) from a summary table, and (a) via ``circuits.viz.network_vs_circuit``.

(b) edge sparsity vs circuit logit gap, circle task; (c) edge sparsity vs discovery time; (d) peak
training memory; (e) training time; (f) inference latency. Points and bars are means, error bars
the 95% bootstrap intervals. Small PNGs: dpi 100, Agg backend, stored as 256-colour palette images
(a third of the size of RGBA ones for these line drawings, so a report can be committed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from hooked_bimt.atomic import atomic_write  # noqa: E402
from hooked_bimt.study.bootstrap import Interval  # noqa: E402
from hooked_bimt.study.summary import Summary  # noqa: E402

DPI = 100
COLORS = {"vanilla": "#7f7f7f", "l1": "#1f77b4", "l1_local": "#2ca02c", "l1_swap": "#ff7f0e", "bimt": "#d62728"}
MARKERS = ("o", "s", "^", "D")
TRAIN_BARS = {
    "d_training_memory.png": ("peak_memory_bytes", "peak training memory (MiB)", 1 / 2**20),
    "e_training_time.png": ("train_seconds", "training wall time (s)", 1.0),
    "f_inference_latency.png": ("inference_ms_per_batch", "inference latency (ms / batch)", 1.0),
}


def _write_palette_png(fig: Any, tmp: Path) -> None:
    from PIL import Image  # matplotlib's own dependency

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)


def _save(fig: Any, path: Path) -> Path:
    if path.suffix.lower() in ("", ".png"):
        atomic_write(path, lambda tmp: _write_palette_png(fig, tmp))
    else:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".")))
    plt.close(fig)
    return path


def _err(iv: Interval, scale: float = 1.0) -> list[list[float]]:
    return [[(iv.mean - iv.low) * scale], [(iv.high - iv.mean) * scale]]


def interval_scatter(summary: Summary, x: str, y: str, path: Path, *, tasks: Sequence[str],
                     regimes: Sequence[str], title: str) -> Path:
    """One point per regime (and task): mean ``x`` vs mean ``y`` with interval bars on both axes."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for t, task in enumerate(tasks):
        for regime in regimes:
            ivs = summary.get((regime, task), {})
            if x not in ivs or y not in ivs:
                continue
            label = regime if len(tasks) == 1 else f"{regime} ({task})"
            ax.errorbar(ivs[x].mean, ivs[y].mean, xerr=_err(ivs[x]), yerr=_err(ivs[y]), fmt=MARKERS[t % 4],
                        color=COLORS.get(regime, "k"), capsize=3, label=label)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.ticklabel_format(useOffset=False, style="plain")  # sparsities near 1 must read as 0.9995, not 1e-4 + offset
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.4g"))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def training_bar(summary: Summary, measure: str, path: Path, *, regimes: Sequence[str], ylabel: str,
                 scale: float = 1.0) -> Path:
    """Bar per regime of a training measure (one value per trained model), with interval bars."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    names, means, lows, highs = [], [], [], []
    for regime in regimes:
        iv = next((ivs[measure] for (r, _), ivs in sorted(summary.items()) if r == regime and measure in ivs), None)
        if iv is None:
            continue
        names.append(regime)
        means.append(iv.mean * scale)
        lows.append((iv.mean - iv.low) * scale)
        highs.append((iv.high - iv.mean) * scale)
    ax.bar(names, means, yerr=[lows, highs], capsize=4, color=[COLORS.get(n, "k") for n in names])
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return _save(fig, path)


def summary_figures(summary: Summary, fig_dir: str | Path, *, regimes: Sequence[str], tasks: Sequence[str],
                    circle_task: str = "circle") -> list[Path]:
    """Write figures (b)-(f) into ``fig_dir``; returns their paths."""
    fig_dir = Path(fig_dir)
    paths = [
        interval_scatter(summary, "edge_sparsity", "logit_gap", fig_dir / "b_sparsity_vs_logit_gap.png",
                         tasks=[circle_task] if circle_task in tasks else list(tasks), regimes=regimes,
                         title="edge sparsity vs circuit logit gap (circle task)"),
        interval_scatter(summary, "edge_sparsity", "discovery_seconds", fig_dir / "c_sparsity_vs_discovery_time.png",
                         tasks=tasks, regimes=regimes, title="edge sparsity vs ACDC discovery time"),
    ]
    for name, (measure, ylabel, scale) in TRAIN_BARS.items():
        paths.append(training_bar(summary, measure, fig_dir / name, regimes=regimes, ylabel=ylabel, scale=scale))
    return paths


def network_figure(model: Any, circuit: Any, path: Path, regime: str) -> Path:
    """Figure (a) for one regime: the full network beside its discovered circuit (``circuits.viz``)."""
    from circuits import viz

    fig = viz.network_vs_circuit(model, circuit, titles=(f"{regime}: full network", f"{regime}: circuit"))
    return _save(fig, Path(path))
