"""hooked-bimt's circuits against auto-circuit 1.0.1, side by side on the same weights (issue 25 items 1-2).

Our side runs here (TransformerLens 4 ``TransformerBridge``); auto-circuit needs TransformerLens < 4, so its side
(``peer_side.py``) runs as a child process in ``.peers-venv`` (made by ``make_venv.sh``). The seeded HuggingFace
model of ``benchmarks/bench_bridge_acdc.py`` is written to a temporary directory (safetensors + JSON, no pickle)
with the batches; the peer rebuilds it under transformers 4.x and converts it to a TL 2.x ``HookedTransformer``.

Checks (each stops the run with a message if it fails): clean logits equal to 1e-10 (float64); the same edges
(auto-circuit's factorized graph with separate q/k/v = SPEC 7's graph, names mapped by ``peer_name``); ACDC at
the same threshold on KL at the last position gives the same circuit once auto-circuit tests the edges in our
order (``acdc_order``; see ``peer_side.py``); EAP (gradient at the clean run, logit difference of per-prompt
answer/wrong-answer tokens at the last position) gives equal scores. EAP-IG: we integrate along the straight
line from the corrupted to the clean *input embedding* at k midpoints; auto-circuit scales every edge's mask
together from 0 to 1 (k + 1 points, left and right ends included, summed). The paths differ, so the scores are
compared by correlation and by how close each method's sum comes to the exact total effect; timed at equal
gradient passes (ours ``steps=k``, theirs ``integrated_grad_samples=k - 1``: k passes each).

Timing: one untimed run of each (one-time costs, and the results checked), then ``--repeats`` runs alternating
ours and theirs, one torch thread on each side; medians and their ratio, of wall-clock time and of each process's
CPU time (one thread: CPU time is robust to other jobs on the machine; wall time is not).

    PYTHONPATH=. python benchmarks/peers/compare.py [--layers 4] [--prompts 16] [--tokens 16] [--threshold 0.0002]
        [--steps 5 50] [--repeats 3] [--acdc-repeats 3] [--arch gpt2|neox] [--pythia70m] [--peer-python .peers-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_bridge_acdc import batches, hf_model, pythia70m_hf, wrap  # noqa: E402

import circuits  # noqa: E402
from circuits.graph import Edge, graph_of  # noqa: E402

HERE = Path(__file__).resolve().parent
ARCH = {"GPT2LMHeadModel": "gpt2", "GPTNeoXForCausalLM": "neox"}


def _node(hook: str, index: int, n_layers: int, receiver: bool) -> str:
    """auto-circuit's node name for one of our nodes (SPEC 7 graph)."""
    parts = hook.split(".")
    if hook == "embed.hook_out":
        return "Resid Start"
    if receiver and hook == f"blocks.{n_layers - 1}.hook_out":
        return "Resid End"
    layer = int(parts[1])
    if parts[-1] in ("hook_mlp_in", "hook_out") and (receiver or parts[-2] == "mlp"):
        return f"MLP {layer}"
    if parts[-1] == "hook_result":
        return f"A{layer}.{index}"
    if receiver and parts[-1] in ("hook_q_input", "hook_k_input", "hook_v_input"):
        return f"A{layer}.{index}.{parts[-1][5].upper()}"
    raise ValueError(f"no auto-circuit name for {'receiver' if receiver else 'sender'} {hook}[{index}]")


def peer_name(edge: Edge, n_layers: int) -> str:
    """auto-circuit's ``f"{src.name}->{dest.name}"`` of our edge."""
    return (f"{_node(edge.sender, edge.sender_index, n_layers, False)}->"
            f"{_node(edge.receiver, edge.receiver_index, n_layers, True)}")


def acdc_order(edges: list[Edge], receivers: list[str]) -> list[Edge]:
    """SPEC 7's ACDC order: receiver hooks in reverse forward order; within a hook, ``graph.edges()`` order
    (receiver node ascending, then senders in forward order). ``receivers`` in forward order."""
    pos = {h: i for i, h in enumerate(receivers)}
    return sorted(edges, key=lambda e: -pos[e.receiver])  # stable: keeps the order within a hook


def write_inputs(work: Path, arch: str, hf, cfg, batch: dict[str, torch.Tensor]) -> None:
    """The peer's inputs: the HuggingFace weights (before wrapping), its config, the batches; atomic writes."""
    def atomic(name: str, write) -> None:
        tmp = work / (name + ".tmp")
        write(tmp)
        os.replace(tmp, work / name)

    weights = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()}
    atomic("weights.safetensors", lambda p: save_file(weights, str(p)))
    atomic("batch.safetensors", lambda p: save_file({k: v.contiguous() for k, v in batch.items()}, str(p)))
    spec = {"arch": arch, "hf_config": cfg.to_dict()}
    atomic("model.json", lambda p: p.write_text(json.dumps(spec, default=str)))


class Peer:
    """auto-circuit in its own process: one JSON request per line, one JSON reply per line."""

    def __init__(self, python: str, work: Path):
        self.work = work
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH="")
        self.log = open(work / "peer.log", "w")
        self.proc = subprocess.Popen([python, str(HERE / "peer_side.py"), str(work)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.hello = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"auto-circuit's process ended; its log:\n{(self.work / 'peer.log').read_text()[-3000:]}")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def scores(self, **req) -> tuple[dict[str, float], tuple[float, float]]:
        """The peer's scores by edge name and its (wall-clock, CPU) seconds."""
        r = self.ask(**req)
        scores = {k: float(v) for k, v in json.loads((self.work / r["out"]).read_text()).items()}
        return scores, (r["seconds"], r["cpu_seconds"])

    def close(self) -> None:
        """Ask the peer to quit (if it still runs), wait for it, close its log."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


def check(ok: bool, what: str) -> None:
    print(f"check: {what}: {'OK' if ok else 'FAILED'}", flush=True)
    if not ok:
        raise SystemExit(f"disagreement: {what}")


def correlation(a: list[float], b: list[float]) -> float:
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float(torch.corrcoef(torch.stack([ta, tb]))[0, 1])


def timed(fn):
    """``fn()`` and its (wall-clock, process CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - t0, time.process_time() - c0)


def alternate(ours, theirs, repeats: int) -> tuple[list, list]:
    """``repeats`` timings of each, alternating ours and theirs."""
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t_ours.append(timed(ours)[1])
        t_theirs.append(theirs()[1])
    return t_ours, t_theirs


def hf_and_batch(args):
    """The seeded HuggingFace model (name, model, config) and the batch: clean/corrupt tokens, one answer and one
    wrong answer per prompt (seeded)."""
    name, hf, cfg = pythia70m_hf() if args.pythia70m else hf_model(args.layers, arch=args.arch)
    vocab = cfg.vocab_size
    clean, corrupt = batches(vocab=vocab, batch=args.prompts, seq=args.tokens)
    g = torch.Generator().manual_seed(2)
    answers, wrong = torch.randint(0, vocab, (2, args.prompts, 1), generator=g)
    return (name, hf, cfg), {"clean": clean, "corrupt": corrupt, "answers": answers, "wrong_answers": wrong}


def setup(args, work: Path):
    """Our bridge, the batch and the peer process (weights written first)."""
    (name, hf, cfg), batch = hf_and_batch(args)
    write_inputs(work, ARCH[name], hf, cfg, batch)
    model = wrap(name, hf, cfg)
    return model, batch, Peer(args.peer_python, work)


def check_same_model(model, batch, peer, work: Path) -> list[Edge]:
    """Logits equal to 1e-10 and the same edge set; returns our edges in graph order."""
    with torch.no_grad():
        ours = model(batch["clean"])
    theirs = load_file(str(work / peer.ask(cmd="logits")["out"]))["clean"]
    err = (ours - theirs).abs().max().item()
    check(err <= 1e-10, f"clean logits equal to 1e-10 (float64): max |difference| {err:.2e}")
    graph = graph_of(model)
    edges = list(graph.edges())
    names = [peer_name(e, model.cfg.n_layers) for e in edges]
    check(sorted(names) == peer.ask(cmd="edges")["edges"] and len(set(names)) == len(names),
          f"the same {len(edges)} edges, one to one (auto-circuit: {peer.hello['n_edges']})")
    return edges


def compare_acdc(model, batch, peer, work: Path, edges: list[Edge], args) -> dict:
    graph = graph_of(model)
    n_layers = model.cfg.n_layers
    order = [peer_name(e, n_layers) for e in acdc_order(edges, graph.receivers())]
    (work / "order.json").write_text(json.dumps(order))
    clean, corrupt = batch["clean"], batch["corrupt"]
    ours = lambda: circuits.acdc(model, clean, corrupt, threshold=args.threshold, engine="fast")  # noqa: E731
    theirs = lambda: peer.scores(cmd="acdc", threshold=args.threshold, order="order.json")  # noqa: E731
    c, t_first = timed(ours)
    scores, t_their_first = theirs()
    kept = {n for n, v in scores.items() if v == math.inf}
    mine = {peer_name(e, n_layers) for e in c.edges}
    check(mine == kept, f"ACDC threshold {args.threshold}: the same circuit ({len(mine)} vs {len(kept)} of "
          f"{len(edges)} edges kept; {len(mine ^ kept)} differ)")
    note = f"(ours: {c.settings['engine_used']}, {c.settings['n_tested']} tested)"
    if args.acdc_repeats == 0:  # the checked runs' times: one-time costs included on both sides
        return report("ACDC (first runs)", [t_first], [t_their_first], note)
    t_ours, t_theirs = alternate(ours, theirs, args.acdc_repeats)
    return report("ACDC", t_ours, t_theirs, note)


def report(what: str, t_ours: list[tuple], t_theirs: list[tuple], note: str = "") -> dict:
    """Median wall-clock and CPU seconds of each side and their ratios (auto-circuit / ours)."""
    row = {"method": what}
    parts = []
    for k, kind in enumerate(("wall", "CPU")):
        o, t = [x[k] for x in t_ours], [x[k] for x in t_theirs]
        mo, mt = statistics.median(o), statistics.median(t)
        row[kind] = mt / mo
        parts.append(f"{kind} ours {mo:.3f} s ({min(o):.3f}-{max(o):.3f}), auto-circuit {mt:.3f} s "
                     f"({min(t):.3f}-{max(t):.3f}): {mt / mo:.1f}x")
    print(f"time: {what}: medians of {len(t_ours)}: " + "; ".join(parts) + f" {note}", flush=True)
    return row


def our_eap(model, batch, steps):
    metric = circuits.metrics.logit_diff(batch["answers"][:, 0], batch["wrong_answers"][:, 0])
    point = "clean" if steps is None else "auto"
    return lambda: circuits.eap(model, batch["clean"], batch["corrupt"], metric, steps=steps, point=point)


def compare_eap(model, batch, peer, edges: list[Edge], args) -> dict:
    n_layers = model.cfg.n_layers
    ours = our_eap(model, batch, None)
    theirs = lambda: peer.scores(cmd="eap")  # noqa: E731
    mine, (their, _) = ours(), theirs()
    err = max(abs(mine[e] - their[peer_name(e, n_layers)]) for e in edges)
    scale = max(abs(v) for v in mine.values())
    check(err <= 1e-9 * max(1.0, scale), f"EAP scores equal: max |difference| {err:.2e} (largest score {scale:.2e})")
    t_ours, t_theirs = alternate(ours, theirs, args.repeats)
    return report("EAP", t_ours, t_theirs)


def total_effect(model, batch) -> float:
    """The metric's exact change when every edge is removed: M(corrupted run) - M(clean run)."""
    metric = circuits.metrics.logit_diff(batch["answers"][:, 0], batch["wrong_answers"][:, 0])
    with torch.no_grad():
        bad, good = model(batch["corrupt"]), model(batch["clean"])
        return float(metric(bad, good) - metric(good, good))


def compare_eap_ig(model, batch, peer, edges: list[Edge], steps: int, args) -> dict:
    n_layers = model.cfg.n_layers
    ours = our_eap(model, batch, steps)
    theirs = lambda: peer.scores(cmd="eap_ig", samples=steps - 1)  # noqa: E731
    mine, (their, _) = ours(), theirs()
    a = [mine[e] for e in edges]
    b = [their[peer_name(e, n_layers)] / steps for e in edges]  # their sum over k points -> a mean
    print(f"EAP-IG {steps} gradient passes: correlation of the scores {correlation(a, b):.4f}; sum of scores: "
          f"ours {sum(a):.4e}, auto-circuit {sum(b):.4e}; exact total effect {total_effect(model, batch):.4e}",
          flush=True)
    t_ours, t_theirs = alternate(ours, theirs, args.repeats)
    return report(f"EAP-IG {steps} passes", t_ours, t_theirs)


def parse(argv=None, check_peer: bool = True) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=0.0002)
    ap.add_argument("--steps", type=int, nargs="*", default=[5, 50])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--acdc-repeats", type=int, default=3,
                    help="timed ACDC runs; 0: time the checked (first) runs instead, one-time costs included")
    ap.add_argument("--methods", nargs="*", default=["acdc", "eap", "eap_ig"], choices=["acdc", "eap", "eap_ig"])
    ap.add_argument("--arch", default="gpt2", choices=["gpt2", "neox"], help="bench_bridge_acdc's families")
    ap.add_argument("--pythia70m", action="store_true", help="a Pythia-70m-shaped GPT-NeoX instead (6 layers, d_model 512)")
    ap.add_argument("--peer-python", default=str(HERE.parents[1] / ".peers-venv" / "bin" / "python"))
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.acdc_repeats < 0 or args.prompts < 1 or args.tokens < 2 or any(k < 2 for k in args.steps):
        ap.error("need --repeats >= 1, --acdc-repeats >= 0, --prompts >= 1, --tokens >= 2, every --steps >= 2")
    if check_peer and not Path(args.peer_python).exists():
        ap.error(f"no peer Python at {args.peer_python}: run benchmarks/peers/make_venv.sh first")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_num_threads(1)
    print(f"{platform.machine()}, torch {torch.__version__}, 1 thread per side, float64; {' '.join(sys.argv[1:])}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        work = Path(tmp)
        model, batch, peer = setup(args, work)
        try:
            print(f"model: {model.cfg.architecture}, {model.cfg.n_layers} layers, d_model {model.cfg.d_model}, "
                  f"{args.prompts} prompts x {args.tokens} tokens", flush=True)
            edges = check_same_model(model, batch, peer, work)
            rows = []
            if "eap" in args.methods:
                rows.append(compare_eap(model, batch, peer, edges, args))
            if "eap_ig" in args.methods:
                rows += [compare_eap_ig(model, batch, peer, edges, k, args) for k in args.steps]
            if "acdc" in args.methods:
                rows.append(compare_acdc(model, batch, peer, work, edges, args))
        finally:
            peer.close()
    print("summary (auto-circuit / ours): " + "; ".join(f"{r['method']} {r['CPU']:.1f}x CPU, {r['wall']:.1f}x wall"
                                                        for r in rows))


if __name__ == "__main__":
    main()
