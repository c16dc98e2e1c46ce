"""``growth.py``'s report: the markdown table, the extrapolations (every one labelled as such) and the log-log
figure. Pure functions of the measured rows and per-hook costs (``growth_acdc.HookCost`` as dicts).

The extrapolation to sizes too slow to run (``estimate``): a state of a hook costs its unembedding and metric over
the vocabulary (U, measured per width on the output hook of the 2-layer width runs) plus the work in the blocks it
recomputes; the blocks' work of a whole run follows the depth family's measured power law in the number of layers
(d_model 128), scaled by the edges (12 heads against 8) and by the measured growth of the blocks' work with width
(W, the 2-layer width runs' layer-0 hooks minus U). Each piece is measured; their product is an extrapolation, and
is printed as one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from growth_acdc import hook_edges

HOUR = 3600.0
GPT2_SMALL = (12, 12)  # layers, heads


def _f(x, fmt: str = "{:.2f}") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def table(rows: list[dict]) -> list[str]:
    out = ["| size | layers | heads | d_model | vocab | edges | EAP s | EAP-IG(5) s | ACDC fast s | tested / kept | "
           "sampled nodes (edges): disagreements, max abs effect diff | public acdc fast / reference s (identical) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acdc = _f(r.get("acdc_s")) + ("" if r.get("acdc_finished") else " (stopped: budget)")
        sampled = (f"{r['sampled_nodes']} ({r['sampled_edges']}): {r['sampled_disagreements']}, "
                   f"{r['sampled_max_effect_diff']:.1e}" if r.get("sampled_nodes") else "-")
        ref = (f"{r['public_fast_s']:.2f} / {r['reference_s']:.2f} ({r['reference_identical']})"
               if "reference_s" in r else "-")
        out.append(f"| {r['size']} | {r['layers']} | {r['heads']} | {r['d_model']} | {r['vocab']} | {r['edges']} | "
                   f"{_f(r.get('eap_s'))} | {_f(r.get('eap_ig5_s'))} | {acdc} | {_f(r.get('acdc_tested'), '{}')} / "
                   f"{_f(r.get('acdc_kept'), '{}')} | {sampled} | {ref} |")
    return out


def _per_edge(hooks: list[dict], size: str, blocks: int) -> Optional[float]:
    """CPU seconds per tested edge over ``size``'s hooks that recompute ``blocks`` blocks."""
    sel = [h for h in hooks if h["size"] == size and int(h["blocks"]) == blocks and int(h["tested"])]
    n = sum(int(h["tested"]) for h in sel)
    return sum(float(h["seconds"]) for h in sel) / n if n else None


def n_edges(layers: int, heads: int) -> int:
    return sum(n for _, n, _ in hook_edges(layers, heads))


def depth_law(rows: list[dict]) -> Optional[tuple[float, float]]:
    """(c, k) of T = c * layers^k, log-log least squares over the finished runs of the depth family (d_model 128,
    8 heads, vocabulary 64) with at least 4 layers (2 layers is dominated by per-pass overheads)."""
    pts = [(math.log(r["layers"]), math.log(r["acdc_s"])) for r in rows
           if r.get("acdc_finished") and (r["d_model"], r["vocab"]) == (128, 64) and r["layers"] >= 4]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return math.exp(my - k * mx), k


def width_costs(rows: list[dict], hooks: list[dict]) -> dict[int, tuple[float, float]]:
    """Per width run (2 layers, vocabulary 50257): ``(U, W)``, U the CPU seconds per tested edge of the output hook
    (a state's unembedding and metric over the vocabulary), W those of the layer-0 hooks minus U (a state's work in
    the two blocks it recomputes)."""
    out = {}
    for r in rows:
        if r["layers"] == 2 and r["vocab"] == 50257 and r.get("acdc_finished"):
            u, w = _per_edge(hooks, r["size"], 0), _per_edge(hooks, r["size"], 2)
            if u is not None and w is not None:
                out[r["d_model"]] = (u, max(w - u, 0.0))
    return out


def estimate(layers: int, heads: int, d_model: int, law: tuple[float, float], width: dict) -> tuple[float, float]:
    """(metric part, block part) of a full ACDC run's CPU seconds at this shape, vocabulary 50257 (EXTRAPOLATED):
    every edge costs one state's unembedding and metric, U(d_model); the blocks' work is the depth family's
    measured law at d_model 128, scaled by the edges of ``heads`` against 8 heads and by W(d_model) / W(128)."""
    c, k = law
    u, w = width[d_model]
    e = n_edges(layers, heads)
    return e * u, c * layers ** k * e / n_edges(layers, 8) * w / width[128][1]


def largest_within(cost, limit: float = HOUR, max_layers: int = 96) -> Optional[int]:
    fits = [n for n in range(1, max_layers + 1) if cost(n) <= limit]
    return max(fits) if fits else None


def extrapolations(rows: list[dict], hooks: list[dict]) -> list[str]:
    """The depth law checked on the measured runs; GPT-2 small's full ACDC and the largest models within an hour."""
    out = ["EXTRAPOLATIONS, not measurements (fast engine, full ACDC, CPU seconds):"]
    law = depth_law(rows)
    if law is None:
        return out + ["- (needs finished depth runs with at least 4 layers)"]
    c, k = law
    checks = ", ".join(f"{r['size']} {c * r['layers'] ** k / r['acdc_s']:.2f}" for r in rows
                       if r.get("acdc_finished") and (r["d_model"], r["vocab"]) == (128, 64))
    out.append(f"- depth (d_model 128, 8 heads, vocabulary 64): T = {c:.3g} x layers^{k:.2f} s (fitted on the runs "
               f"with >= 4 layers; predicted / measured: {checks}); one hour at ~{(HOUR / c) ** (1 / k):.0f} layers")
    width = width_costs(rows, hooks)
    if 128 in width and 768 in width:
        (u1, w1), (u, w) = width[128], width[768]
        m, b = estimate(*GPT2_SMALL, 768, law, width)
        upper = b / (w / w1) * 36  # the blocks' work scaled by FLOPs, (768 / 128)^2, instead of the measured W ratio
        out.append(f"- per state at 2 layers, vocabulary 50257: unembedding + metric U = {u1:.3f} s (d_model 128), "
                   f"{u:.3f} s (768); two blocks W = {w1:.3f} s and {w:.3f} s ({w / w1:.1f}x for 36x the FLOPs)")
        out.append(f"- GPT-2 small (12 layers, 12 heads, 32491 edges): ~{m + b:,.0f} s = {(m + b) / HOUR:.1f} h "
                   f"(unembedding + metric {m:,.0f} s, blocks {b:,.0f} s); {(m + upper) / HOUR:.1f} h if the blocks' "
                   "work grew with FLOPs")
        n = largest_within(lambda L: sum(estimate(L, 12, 768, law, width)))
        out.append(f"- GPT-2 small's width (d_model 768, 12 heads, vocabulary 50257): largest within one hour "
                   f"{n} layers ({n_edges(n, 12) if n else 0} edges)")
    partial = [r for r in rows if r["size"] == "gpt2-small" and r.get("acdc_s") is not None]
    for r in partial:
        u = _per_edge(hooks, "gpt2-small", 0)
        out.append(f"- measured on GPT-2 small itself ({'finished' if r['acdc_finished'] else 'stopped by the budget'}"
                   f"): {r['acdc_tested']} edges in {r['acdc_s']:.0f} s; output hook "
                   f"{_f(u, '{:.3f}')} s per edge (U above: {_f(width.get(768, (None,))[0], '{:.3f}')})")
    return out


def write_report(outdir: Path, rows: list[dict], hooks: list[dict], header: str) -> None:
    lines = [f"# Growth: ACDC fast engine, EAP, EAP-IG ({header})", "", "CPU seconds of this process (one torch "
             "thread). EAP/EAP-IG: a repeated call (the first call, with the declaration check, is in growth.csv).",
             "", *table(rows), "", "## Extrapolations", "", *extrapolations(rows, hooks)]
    (outdir / "growth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    figure(outdir / "growth.png", rows, hooks)


def _series(ax, rows: list[dict], x: str) -> None:
    rows = sorted(rows, key=lambda r: r[x])
    for key, label, style in (("acdc_s", "ACDC fast", "o-"), ("eap_s", "EAP", "s-"), ("eap_ig5_s", "EAP-IG 5", "^-")):
        pts = [(r[x], r[key]) for r in rows if r.get(key) and (key != "acdc_s" or r.get("acdc_finished"))]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    law = depth_law(rows)
    est = [(r[x], law[0] * r["layers"] ** law[1]) for r in rows
           if law is not None and not r.get("acdc_finished") and (r["d_model"], r["vocab"]) == (128, 64)]
    if est:
        ax.plot(*zip(*est), "o", mfc="none", label="ACDC fast, extrapolated")


def figure(path: Path, rows: list[dict], hooks: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = ((axes[0], "layers", [r for r in rows if r["d_model"] == 128 and r["vocab"] == 64],
               "depth: d_model 128, 8 heads, vocab 64"),
              (axes[1], "d_model", [r for r in rows if r["layers"] == 2 and r["vocab"] == 50257],
               "width: 2 layers, 8 heads, vocab 50257"))
    for ax, x, sel, title in panels:
        _series(ax, sel, x)
        ax.set(xscale="log", yscale="log", xlabel=x, ylabel="CPU seconds", title=title)
        ticks = sorted({r[x] for r in sel})
        if ticks:
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
    for r in rows:
        if r["size"] == "gpt2-small":
            for key, mark in (("eap_s", "s"), ("eap_ig5_s", "^")):
                if r.get(key):
                    axes[1].plot([r["d_model"]], [r[key]], mark, color="black")
            axes[1].annotate("GPT-2 small (12 layers, 12 heads)", (r["d_model"], r.get("eap_s") or 1), fontsize=7)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
