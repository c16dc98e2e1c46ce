"""The study's figures: (a) via ``circuits.viz.network_vs_circuit``, (b) the frontiers, (d)-(f) training cost.

(b) one figure per task, three panels over the ACDC thresholds: edges kept (1 - edge sparsity, log
axis) vs circuit logit gap, vs logit-difference recovery, and vs discovery time; a line per regime
through its per-threshold means, the band the 95% bootstrap interval of the y measure over seeds x
batches. (d) peak training memory; (e) training time; (f) inference latency: bars are means, error
bars the 95% bootstrap intervals over seeds. Each function returns ``(path, caption)``. Small PNGs: dpi 100, Agg backend, stored as 256-colour palette images
(a third of the size of RGBA ones for these line drawings, so a report can be committed).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hooked_bimt.atomic import atomic_write  # noqa: E402
from hooked_bimt.study.summary import Summary, Training  # noqa: E402

DPI = 100
COLORS = {"vanilla": "#7f7f7f", "l1": "#1f77b4", "l1_local": "#2ca02c", "l1_swap": "#ff7f0e", "bimt": "#d62728",
          "l1_swap_original": "#8c564b", "bimt_original": "#9467bd"}
Figure = tuple[Path, str]  # (png path, caption: what a reader should see)
PANELS = (("logit_gap", "circuit logit gap (logit units)"), ("logit_diff_recovery", "logit-difference recovery"),
          ("discovery_seconds", "ACDC discovery time (s)"))
TRAIN_BARS = {
    "d_training_memory.png": ("peak_memory_bytes", "peak training memory (MiB)", 1 / 2**20,
                              "Peak training memory per regime (mean over seeds, 95% interval); claim 4 expects the "
                              "swap regimes (bimt, l1_swap) about 1.5x above their no-swap twins (l1_local, l1)."),
    "e_training_time.png": ("train_seconds", "training wall time (s)", 1.0,
                            "Training wall time per regime (mean over seeds, 95% interval): the cost of the "
                            "connection cost and of swaps; wall-clock, so only comparable within this run."),
    "f_inference_latency.png": ("inference_ms_per_batch", "inference latency (ms / batch)", 1.0,
                                "Inference latency per batch per regime: the trained networks have the same shape, "
                                "so bars should be level; a difference is measurement noise or machine load."),
}


def _write_palette_png(fig: Any, tmp: Path) -> None:
    from PIL import Image  # matplotlib's own dependency

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png", bbox_inches="tight")  # no clipped axis labels
    buf.seek(0)
    with Image.open(buf) as img:
        img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)


def _save(fig: Any, path: Path) -> Path:
    if path.suffix.lower() in ("", ".png"):
        atomic_write(path, lambda tmp: _write_palette_png(fig, tmp))
    else:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip("."), bbox_inches="tight"))
    plt.close(fig)
    return path


def frontier_figure(summary: Summary, task: str, path: Path, *, regimes: Sequence[str]) -> Figure:
    """Three panels for ``task``: edges kept (log x) vs logit gap, recovery and discovery time, with 95% bands."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (measure, ylabel) in zip(axes, PANELS):
        for regime in regimes:
            pts = sorted(((ivs["edges_kept"].mean, ivs[measure]) for (r, t, _), ivs in summary.items()
                         if r == regime and t == task and measure in ivs and "edges_kept" in ivs), key=lambda p: p[0])
            if not pts:
                continue
            xs = [x for x, _ in pts]
            color = COLORS.get(regime, "k")
            ax.plot(xs, [iv.mean for _, iv in pts], "o-", color=color, ms=3, label=regime)
            ax.fill_between(xs, [iv.low for _, iv in pts], [iv.high for _, iv in pts], color=color, alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("edges kept = 1 - edge sparsity (log)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: sparsity / faithfulness frontier over ACDC thresholds (95% bootstrap bands)", fontsize=10)
    fig.tight_layout()
    caption = (f"Task {task}. One point per ACDC threshold (mean over seeds x batches), band = 95% bootstrap interval "
               "of the y measure. Further left = sparser circuits (an empty circuit is drawn at one edge). Left: a "
               "regime whose line lies lower is more faithful at the same sparsity (claim 1); middle: recovery "
               "falls from ~1 to ~0 as circuits empty; right: discovery time at matched sparsity (claim 3).")
    return _save(fig, path), caption


def training_bar(training: Training, measure: str, path: Path, *, regimes: Sequence[str], ylabel: str,
                 scale: float = 1.0) -> Path:
    """Bar per regime of a training measure (one value per trained model), with interval bars."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    names, means, lows, highs = [], [], [], []
    for regime in regimes:
        iv = training.get(regime, {}).get(measure)
        if iv is None:
            continue
        names.append(regime)
        means.append(iv.mean * scale)
        lows.append((iv.mean - iv.low) * scale)
        highs.append((iv.high - iv.mean) * scale)
    ax.bar(names, means, yerr=[lows, highs], capsize=4, color=[COLORS.get(n, "k") for n in names])
    ax.set_ylabel(ylabel)
    ax.set_xlabel("training regime")
    ax.tick_params(axis="x", labelsize=7, labelrotation=25)  # long names (bimt_original) must not overlap
    fig.tight_layout()
    return _save(fig, path)


def frontier_figures(summary: Summary, fig_dir: str | Path, *, regimes: Sequence[str], tasks: Sequence[str],
                     slug: Callable[[str], str] | None = None) -> list[Figure]:
    """The frontier figure of each task, ``b_frontier_{slug(task)}.png`` (default slug: the MNIST tasks')."""
    if slug is None:
        from hooked_bimt.study.tasks import get_task, task_slug

        slug = lambda t: task_slug(get_task(t))  # noqa: E731
    return [frontier_figure(summary, t, Path(fig_dir) / f"b_frontier_{slug(t)}.png", regimes=regimes) for t in tasks]


def training_figures(training: Training, fig_dir: str | Path, *, regimes: Sequence[str], group: str = "",
                     slug: str = "") -> list[Figure]:
    """Figures (d)-(f) of one group of trained models (``group``: its name in the captions, ``slug`` in the file
    names; empty for MNIST, whose models serve every task)."""
    figs = []
    for name, (measure, ylabel, scale, caption) in TRAIN_BARS.items():
        path = Path(fig_dir) / (name if not slug else name.replace(".png", f"_{slug}.png"))
        figs.append((training_bar(training, measure, path, regimes=regimes, ylabel=ylabel, scale=scale),
                     f"{group}: {caption}" if group else caption))
    return figs


def summary_figures(summary: Summary, training: Training, fig_dir: str | Path, *, regimes: Sequence[str],
                    tasks: Sequence[str]) -> list[Figure]:
    """Write the frontier figure of each task and figures (d)-(f) into ``fig_dir``; returns (path, caption)s."""
    return (frontier_figures(summary, fig_dir, regimes=regimes, tasks=tasks)
            + training_figures(training, fig_dir, regimes=regimes))


def network_figure(model: Any, circuit: Any, path: Path, regime: str, what: str) -> Figure:
    """Figure (a) for one regime: the full network beside its discovered circuit (``circuits.viz``)."""
    from circuits import viz

    fig = viz.network_vs_circuit(model, circuit, titles=(f"{regime}: full network", f"{regime}: circuit"))
    return _save(fig, Path(path)), network_caption(regime, what)


def network_caption(regime: str, what: str) -> str:
    """Figure (a)'s caption (also used when a report is rebuilt from stored figures, ``rebuild``)."""
    return (f"{regime}, {what}: left the trained network (neurons at their BIMT positions, line width ~ |weight|), "
            "right the ACDC circuit. The paper's Figure 2: BIMT's circuit should be small and spatially local.")
