"""Build the screenshots of docs/gallery.md: train a small BIMT-style MLP on real MNIST (or load one),
pick a circuit, save the offline view, screenshot it with headless Chromium, draw the static figure.

    PYTHONPATH=. python docs/make_gallery.py                      # ~400 steps of training, then figures
    PYTHONPATH=. python docs/make_gallery.py --checkpoint runs/x  # a model saved with HookedMLP.save
    PYTHONPATH=. python docs/make_gallery.py --checkpoint runs/paper/models/bimt/seed0 --acdc 1e-5   # as in docs/gallery.md

Until ``--acdc`` is used the circuit is hand-picked: walking back from the logits of digits 8 and 3,
the strongest-|weight| edges into the neurons already chosen, layer by layer. Its "effects" are the
edges' mean contributions ``W[j, i] * mean(a_i)`` over test images of 8 (a stand-in, said so on the page).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import circuits.viz as viz
from circuits import Circuit, Edge, graph_of
from circuits.viz import browser
from hooked_bimt import HookedMLP, load_mnist
from hooked_bimt.cost import connection_cost

OUT = Path(__file__).resolve().parent / "gallery"


def train(data, steps: int, seed: int, lam: float) -> HookedMLP:
    """AdamW on MSE to one-hot targets plus ``lam * connection_cost`` (A = 2, 2, 0); no swaps."""
    torch.manual_seed(seed)
    model = HookedMLP((784, 100, 100, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    x_all, y_all = data.flat(), data.labels
    for step in range(steps):
        idx = torch.randint(len(y_all), (100,))
        target = torch.nn.functional.one_hot(y_all[idx], 10).float()
        loss = torch.nn.functional.mse_loss(model(x_all[idx]), target)
        loss = loss + lam * connection_cost(model, distance_factor=[2.0, 2.0, 0.0], y_star=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def task_batches(test, n: int = 200, a: int = 8, b: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return test.flat()[test.labels == a][:n], test.flat()[test.labels == b][:n]


def strongest_circuit(model: HookedMLP, clean: torch.Tensor, classes=(8, 3), per_layer=(60, 30, 12)) -> Circuit:
    """Walk back from ``classes``: keep the ``per_layer[k]`` strongest |W| edges into the chosen receivers."""
    graph = graph_of(model)
    L = model.n_layers
    _, cache = model.run_with_cache(clean)
    receivers, edges, effects = list(classes), [], {}
    for l in range(L - 1, -1, -1):
        W = model.linears[l].weight.detach()
        sub = W[receivers].abs()
        k = min(per_layer[min(l, len(per_layer) - 1)], sub.numel())
        flat = sub.flatten().topk(k).indices
        mean_act = cache[model.layer_hook(l, "post")].mean(0)
        senders = set()
        for f in flat.tolist():
            j, i = receivers[f // W.shape[1]], f % W.shape[1]
            e = Edge(model.layer_hook(l, "post"), i, model.layer_hook(l + 1, "pre"), j)
            edges.append(e)
            effects[e] = float(W[j, i] * mean_act[i])
            senders.add(i)
        receivers = sorted(senders)
    return Circuit.from_edges(graph, edges, effects=effects, settings={"method": "strongest |weight| walk-back"})


def shrink_png(path: Path, colors: int = 64) -> None:
    """Palette-quantise a screenshot so the gallery stays a few hundred KB."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    img.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="directory written by HookedMLP.save (skips training)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lam", type=float, default=0.01, help="connection-cost weight while training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--acdc", type=float, default=None, metavar="THRESHOLD", help="use circuits.acdc (digit 8 vs 3)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if browser.find_chromium() is None:
        print("headless Chromium not found: `make browser` or apt-get install chromium", file=sys.stderr)
        return 2
    t0 = time.time()
    train_split, test_split = load_mnist()
    model = HookedMLP.load(args.checkpoint) if args.checkpoint else train(train_split, args.steps, args.seed, args.lam)
    model.eval()
    clean, corrupted = task_batches(test_split)
    with torch.no_grad():
        acc = (model(test_split.flat()).argmax(1) == test_split.labels).float().mean().item()
    print(f"test accuracy {acc:.3f}")
    with torch.no_grad():
        if args.acdc is not None:
            from circuits import acdc

            model, clean, corrupted = model.double(), clean.double(), corrupted.double()  # exact decisions
            circuit = acdc(model, clean, corrupted, threshold=args.acdc)
            source = f"circuits.acdc, threshold {args.acdc}"
        else:
            circuit = strongest_circuit(model, clean)
            source = "strongest-|weight| walk-back from the 8 and 3 logits; 'effect' = mean contribution W·a on 8s"
    print(f"model ready, circuit of {circuit.n_edges} edges ({source}) in {time.time() - t0:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shots = {
            "circuit_bimt.png": (viz.circuit_graph(model, circuit, title=f"Digit 8 vs 3 ({source.split(';')[0]})"), (1120, 1420)),
            "circuit_layered.png": (viz.circuit_graph(model, circuit, layout="layered", width_by="weight",
                                                      title="The same circuit, layered layout, widths by |weight|"), (1440, 720)),
            "neuron_activations.png": (viz.neuron_activations(model, circuit, clean, corrupted, max_examples=8,
                                                              clean_labels=[8] * 8, corrupted_labels=[3] * 8), (1000, 260)),
        }
        for name, (view, size) in shots.items():
            page = view.save(Path(tmp) / name.replace(".png", ".html"))
            shrink_png(browser.screenshot(page, args.out / name, size=size))
            print(f"{name}: {(args.out / name).stat().st_size // 1024} KB")
    t1 = time.time()
    fig = viz.network_vs_circuit(model, circuit, args.out / "network_vs_circuit.png", titles=("Full network", "Circuit"), dpi=110)
    seconds = time.time() - t1
    shrink_png(args.out / "network_vs_circuit.png")
    print(f"network_vs_circuit.png: {(args.out / 'network_vs_circuit.png').stat().st_size // 1024} KB, drawn in {seconds:.1f} s")
    del fig
    return 0


if __name__ == "__main__":
    sys.exit(main())
