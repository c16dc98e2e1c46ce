"""``growth.py``'s report: the markdown table, the extrapolations (every one labelled as such) and the log-log
figure. Pure functions of the measured rows and per-hook costs (``growth_acdc.HookCost`` as dicts)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from growth_acdc import CostModel, HookCost

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


def _hooks_of(hooks: list[dict], size: str) -> list[HookCost]:
    keep = ("hook", "blocks", "tested", "seconds")
    return [HookCost(**{k: h[k] for k in keep}) for h in hooks if h["size"] == size]


def _family(rows: list[dict], r: dict) -> list[dict]:
    """The finished runs of ``r``'s depth family (same width, vocabulary and heads)."""
    return [q for q in rows if q.get("acdc_finished") and (q["d_model"], q["vocab"], q["heads"]) ==
            (r["d_model"], r["vocab"], r["heads"])]


def validation(rows: list[dict], hooks: list[dict]) -> list[str]:
    """Each finished depth run's cost model predicting the others of its family: predicted / measured."""
    out = []
    for r in rows:
        fam = [q for q in _family(rows, r) if q is not r]
        if not r.get("acdc_finished") or not fam:
            continue
        m = CostModel.fit(_hooks_of(hooks, r["size"]))
        parts = [f"{q['size']} {m.predict(q['layers'], q['heads']) / q['acdc_s']:.2f}" for q in fam]
        out.append(f"- cost model of {r['size']} (a = {m.a:.2e} s, b = {m.b:.2e} s per edge and block): "
                   f"predicted / measured: {', '.join(parts)}")
    return out


def largest_within(m: CostModel, heads: int, limit: float = HOUR, max_layers: int = 96) -> Optional[int]:
    best = None
    for layers in range(1, max_layers + 1):
        if m.predict(layers, heads) <= limit:
            best = layers
    return best


def power_law(rows: list[dict]) -> Optional[tuple[float, float]]:
    """(c, k) of T = c * layers^k fitted (log-log least squares) on the finished runs of the d_model 128 depth
    family with at least 4 layers."""
    pts = [(math.log(r["layers"]), math.log(r["acdc_s"])) for r in rows
           if r.get("acdc_finished") and r["d_model"] == 128 and r["vocab"] == 64 and r["layers"] >= 4]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return math.exp(my - k * mx), k


def extrapolations(rows: list[dict], hooks: list[dict]) -> list[str]:
    """GPT-2 small's full ACDC and the largest models within an hour, from the measured costs (extrapolated)."""
    by = {r["size"]: r for r in rows}
    out = ["EXTRAPOLATIONS (not measurements): a full ACDC run's fast-engine CPU time predicted by "
           "`growth_acdc.CostModel` (seconds per tested edge = a + b x blocks recomputed, fitted on one run's "
           "receiver hooks, summed over the hooks of the target shape)."]
    for src in ("gpt2-small", "D768"):
        if src in by and any(h["size"] == src for h in hooks):
            m = CostModel.fit(_hooks_of(hooks, src))
            t = m.predict(*GPT2_SMALL)
            fit = "its partial run's hooks" if src == "gpt2-small" else "the 2-layer, 8-head d_model 768 run"
            n = largest_within(m, 12)
            out.append(f"- GPT-2 small (12 layers, 12 heads, 32491 edges), model fitted on {fit}: full ACDC "
                       f"~{t:,.0f} s = {t / HOUR:.1f} h CPU (extrapolated); largest GPT-2-small-width model (d_model "
                       f"768, 12 heads, vocabulary 50257) within one hour: {n} layers (extrapolated)")
    depth = [r for r in rows if r.get("acdc_finished") and r["d_model"] == 128 and r["vocab"] == 64]
    if depth:
        top = max(depth, key=lambda r: r["layers"])
        m = CostModel.fit(_hooks_of(hooks, top["size"]))
        out.append(f"- d_model 128, 8 heads, vocabulary 64, model fitted on {top['size']}: largest within one hour "
                   f"{largest_within(m, 8)} layers (extrapolated)")
    law = power_law(rows)
    if law is not None:
        c, k = law
        out.append(f"- the same family, power law of the measured runs (>= 4 layers): T = {c:.3g} x layers^{k:.2f} s; "
                   f"one hour at ~{(HOUR / c) ** (1 / k):.0f} layers (extrapolated)")
    return out


def write_report(outdir: Path, rows: list[dict], hooks: list[dict], header: str) -> None:
    lines = [f"# Growth: ACDC fast engine, EAP, EAP-IG ({header})", "", "CPU seconds of this process (one torch "
             "thread). EAP/EAP-IG: a repeated call (the first call, with the declaration check, is in growth.csv).",
             "", *table(rows), "", "## Extrapolations", "", *validation(rows, hooks), *extrapolations(rows, hooks)]
    (outdir / "growth.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]), flush=True)
    figure(outdir / "growth.png", rows, hooks)


def _series(ax, rows: list[dict], x: str, hooks: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r[x])
    for key, label, style in (("acdc_s", "ACDC fast", "o-"), ("eap_s", "EAP", "s-"), ("eap_ig5_s", "EAP-IG 5", "^-")):
        pts = [(r[x], r[key]) for r in rows if r.get(key) and (key != "acdc_s" or r.get("acdc_finished"))]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    est = [(r[x], CostModel.fit(_hooks_of(hooks, r["size"])).predict(r["layers"], r["heads"])) for r in rows
           if not r.get("acdc_finished") and any(h["size"] == r["size"] for h in hooks)]
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
        _series(ax, sel, x, hooks)
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
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
