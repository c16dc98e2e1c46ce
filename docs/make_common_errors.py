"""Writes docs/common_errors.md: each common mistake, run for real, with the exact message it gets.

    PYTHONPATH=. python docs/make_common_errors.py            # rewrite docs/common_errors.md
    PYTHONPATH=. python docs/make_common_errors.py --check    # exit 1 if the file is out of date

Runs in a scratch directory with relative paths, so the messages do not depend on the machine;
tests/test_common_errors_doc.py checks the committed file matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

DOC = Path(__file__).resolve().parent / "common_errors.md"

INTRO = """# Common errors

What a new user is most likely to get wrong, and what hooked-bimt answers. Every message below is
produced by running the mistake (`docs/make_common_errors.py` writes this page; a test checks it is
current). Each is raised before any work starts: no training, no discovery, nothing written (a metric is
checked on the full and the empty circuit's logits, the two forward passes any search starts with).
Nothing saved is replaced without `--force` (CLI) or `overwrite=True` (Python).

Content hashes: a checkpoint's `config.json` records `weights_sha256` (SHA-256 of `model.safetensors`),
a circuit file its own `sha256` (of every other key, serialised with sorted keys). A file saved before
these hashes existed still loads, with a warning saying to re-save it.
"""


def _data(n: int = 50):
    from hooked_bimt import MNISTSplit

    g = torch.Generator().manual_seed(0)
    split = MNISTSplit(images=torch.rand(n, 28, 28, generator=g), labels=torch.randint(10, (n,), generator=g))
    return split, split


def _mlp():
    from hooked_bimt import HookedMLP

    torch.manual_seed(0)
    return HookedMLP((5, 4, 3)).double()


def _batches():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)


def _cli(*argv: str) -> Callable[[], str]:
    def run() -> str:
        from hooked_bimt.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(list(argv))
        return err.getvalue().strip().splitlines()[-1]

    return run


def _no_setup():
    """A hooked model whose author forgot ``self.setup()`` at the end of ``__init__``."""
    from hooked_bimt._compat import HookedRootModule, HookPoint

    class NoSetup(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.lin, self.hook_in = torch.nn.Linear(5, 3).double(), HookPoint()

        def forward(self, x):
            return self.lin(self.hook_in(x))

        def circuit_graph(self):
            return _mlp().circuit_graph()

    return NoSetup()


def _perm(path: Path) -> None:
    import hashlib

    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    tensors["out_perm"] = torch.full_like(tensors["out_perm"], 2)
    save_file(tensors, path / "model.safetensors")
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    _edit_json(lambda d: d.update(weights_sha256=digest))(path / "config.json")


def _train(**change) -> Callable[[], None]:
    def run() -> None:
        from hooked_bimt import TrainConfig, train

        device = change.pop("device", "cpu")
        config = dataclasses.replace(TrainConfig.quick(), steps=2, eval_every=2, **change)
        train("bimt", config, device=device, data=_data(), progress=False)

    return run


def _config(**change) -> Callable[[], None]:
    def run() -> None:
        from hooked_bimt import TrainConfig

        dataclasses.replace(TrainConfig.quick(), **change)

    return run


def _circuit_file(damage: Callable[[Path], None]) -> Callable[[], None]:
    def run() -> None:
        from circuits import Circuit, graph_of

        path = Path("runs/c.json")
        path.unlink(missing_ok=True)
        Circuit.full(graph_of(_mlp()), settings={"algorithm": "acdc"}).save(path)
        damage(path)
        Circuit.load(path)

    return run


def _edit_json(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        d = json.loads(path.read_text())
        change(d)
        path.write_text(json.dumps(d))

    return damage


def _checkpoint(damage: Callable[[Path], None]) -> Callable[[], None]:
    def run() -> None:
        import shutil

        from hooked_bimt import HookedMLP

        shutil.rmtree("runs/ck", ignore_errors=True)
        _mlp().save("runs/ck")
        damage(Path("runs/ck"))
        HookedMLP.load("runs/ck")

    return run


def _flip(path: Path) -> None:
    data = bytearray((path / "model.safetensors").read_bytes())
    data[-3] ^= 1
    (path / "model.safetensors").write_bytes(bytes(data))


def _circuits_call(name: str, **kw) -> Callable[[], None]:
    def run() -> None:
        import circuits

        model, (clean, corrupted) = kw.pop("model", None) or _mlp(), _batches()
        if "clean_fn" in kw:
            clean = kw.pop("clean_fn")(clean)
        if name == "evaluate":
            full = circuits.Circuit.full(circuits.graph_of(_mlp()))
            circuits.evaluate(model, full, clean, corrupted, **kw)
        else:
            getattr(circuits, name)(model, clean, corrupted, **kw)

    return run


def _nan_model():
    m = _mlp()
    with torch.no_grad():
        m.linears[0].weight[0, 0] = float("nan")
    return m


def _with_inf(x):
    x = x.clone()
    x[0, 0] = float("inf")
    return x


def _bridge(**config):
    """A 1-layer GPT-2 bridge built offline (vocabulary 20, context 8), as docs/transformers.md builds one."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, n_positions=8, **config)
    return build_bridge_from_module(GPT2LMHeadModel(cfg).double().eval(), "GPT2LMHeadModel", hf_config=cfg,
                                    tokenizer=None, device="cpu")


def _llama():
    """A 1-layer Llama bridge (rotary positions, context 6): runs on past its context without an error of its own."""
    from transformer_lens.model_bridge.sources import build_bridge_from_module
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(num_hidden_layers=1, num_attention_heads=2, hidden_size=8, intermediate_size=16, vocab_size=20,
                      max_position_embeddings=6)
    return build_bridge_from_module(LlamaForCausalLM(cfg).double().eval(), "LlamaForCausalLM", hf_config=cfg,
                                    tokenizer=None, device="cpu")


def _tokens(seq: int = 5):
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, 20, (4, seq), generator=g), torch.randint(1, 20, (4, seq), generator=g)


def _on_bridge(name: str = "acdc", change: Callable = lambda c, d: (c, d), bridge: Callable = _bridge,
               **kw) -> Callable[[], None]:
    def run() -> None:
        import circuits

        getattr(circuits, name)(bridge(), *change(*_tokens(kw.pop("seq", 5))), **kw)

    return run


def _set(x, value):
    x = x.clone()
    x[1, 2] = value
    return x


def _ld(clean, corrupt):
    from circuits.metrics import logit_diff

    return logit_diff(torch.tensor(clean), torch.tensor(corrupt))


TRANSFORMER_CASES: list[tuple[str, str, Callable[[], object]]] = [
    ("Transformers", "a token id past the vocabulary", _on_bridge(threshold=0.1, change=lambda c, d: (_set(c, 20), d))),
    ("Transformers", "a negative token id", _on_bridge("eap", change=lambda c, d: (c, _set(d, -1)))),
    ("Transformers", "prompts longer than the context (`n_positions` 8)", _on_bridge(threshold=0.1, seq=9)),
    ("Transformers", "a Llama's prompts past its rotary context (`max_position_embeddings` 6)",
     _on_bridge(threshold=0.1, seq=7, bridge=_llama)),
    ("Transformers", "clean and corrupted prompts of different token lengths",
     _on_bridge(threshold=0.1, change=lambda c, d: (c, d[:, :4]))),
    ("Transformers", "a tokenizer's padded output (`input_ids` with an `attention_mask`)",
     _on_bridge(threshold=0.1, change=lambda c, d: ({"input_ids": c, "attention_mask": torch.ones_like(c)}, d))),
    ("Transformers", "tokens on the meta device", _on_bridge(threshold=0.1, change=lambda c, d: (c.to("meta"), d))),
    ("Transformers", "the config's pad token (`pad_token_id=3`, `tokenizer=None`)",
     _on_bridge(threshold=0.1, change=lambda c, d: (_set(c, 3), d), bridge=lambda: _bridge(pad_token_id=3))),
    ("Transformers", "a Hugging Face model not wrapped in a bridge",
     _on_bridge(threshold=0.1, bridge=lambda: _bridge().original_model)),
    ("Transformers", "a metric returning NaN",
     _on_bridge(threshold=0.1, metric=lambda logits, full: (logits - full).sum() * float("nan"))),
    ("Transformers", "a metric returning one value per example",
     _on_bridge(threshold=0.1, metric=lambda logits, full: (logits - full)[:, -1].pow(2).sum(-1))),
    ("Transformers", "`node_patching` with a logit difference of NaN",
     _on_bridge("node_patching", logit_diff=lambda logits: logits[:, -1, 0] * float("nan"))),
    ("Transformers", "`logit_diff` labels past the vocabulary",
     lambda: _on_bridge(threshold=0.1, metric=_ld([0, 1, 25, 2], [1, 0, 2, 3]))()),
    ("Transformers", "`logit_diff(y, y)`", lambda: _ld([1, 2, 3, 4], [1, 2, 3, 4])),
    ("Transformers", "clean identical to corrupted", _on_bridge(threshold=0.1, change=lambda c, d: (c, c.clone()))),
    ("Transformers", "a per-example `pos` past the sequence",
     lambda: _on_bridge(threshold=0.1, metric=__import__("circuits").metrics.kl(pos=torch.tensor([0, 1, 9, -1])))()),
    ("Transformers", "`eap_then_acdc` with a misspelt ACDC option",
     _on_bridge("eap_then_acdc", top_n=3, threshold=0.1, thresold=0.2)),
    ("Transformers", "`eap_then_acdc` with `top_n=-1` (checked before EAP runs)",
     _on_bridge("eap_then_acdc", top_n=-1, threshold=0.1)),
    ("Transformers", "a circuit view saved over an existing page (the README's `induction.html`, rerun)",
     lambda: _page_over_existing()),
]


def _page_over_existing() -> None:
    import circuits
    import circuits.viz

    Path("induction.html").write_text("from the first run")
    bridge = _bridge()
    circuits.viz.circuit_graph(bridge, circuits.Circuit.full(circuits.graph_of(bridge))).save("induction.html")

CASES: list[tuple[str, str, Callable[[], object]]] = [
    ("Command line", "`train --out` onto a saved model (without `--force`)", _cli("train", "--regime", "bimt", "--out", "runs/m")),
    ("Command line", "`train --out` under a file", _cli("train", "--regime", "bimt", "--out", "afile/sub")),
    ("Command line", "`train --device foo`", _cli("train", "--regime", "bimt", "--out", "runs/new", "--device", "foo")),
    ("Command line", "`train --steps 0`", _cli("train", "--regime", "bimt", "--out", "runs/new", "--steps", "0")),
    ("Command line", "`reproduce --out` an existing file", _cli("reproduce", "--out", "afile")),
    ("Command line", "`reproduce --device mps`", _cli("reproduce", "--out", "runs/new", "--device", "mps")),
    ("Training", "`TrainConfig(lr=inf)`", _config(lr=float("inf"))),
    ("Training", "`TrainConfig(steps=2.5)`", _config(steps=2.5)),
    ("Training", "`TrainConfig(y_star=-0.5)`", _config(y_star=-0.5)),
    ("Training", "`TrainConfig(distance_factor=-2.0)`", _config(distance_factor=-2.0)),
    ("Training", "`widths[-1] = 7` for MNIST", _train(widths=(784, 8, 7))),
    ("Training", "`train(..., device=\"foo\")`", _train(device="foo")),
    ("Training", "a swapping regime too short to swap (a warning)", _train(swap_every=200)),
    ("Checkpoints", "a flipped bit in `model.safetensors`", _checkpoint(_flip)),
    ("Checkpoints", "`format_version: 99`", _checkpoint(lambda p: _edit_json(lambda d: d.update(format_version=99))(p / "config.json"))),
    ("Checkpoints", "`out_perm = [2, 2, 2]` (with a matching hash)", _checkpoint(_perm)),
    ("Checkpoints", "saved model over an existing one", lambda: (_mlp().save("runs/ck2", overwrite=True), _mlp().save("runs/ck2"))),
    ("Circuit files", "no `edges`", _circuit_file(_edit_json(lambda d: d.pop("edges")))),
    ("Circuit files", "a 3-field edge", _circuit_file(_edit_json(lambda d: d["edges"].__setitem__(0, d["edges"][0][:3])))),
    ("Circuit files", "a top-level list", _circuit_file(lambda p: p.write_text("[]"))),
    ("Circuit files", "non-UTF-8 bytes", _circuit_file(lambda p: p.write_bytes(b"\xff\xfe"))),
    ("Circuit files", "an edge index 0.9", _circuit_file(_edit_json(lambda d: d["edges"][0].__setitem__(1, 0.9)))),
    ("Circuit files", "an edited file (hash mismatch)", _circuit_file(_edit_json(lambda d: d["edges"].pop()))),
    ("Circuit files", "`Circuit.save` over an existing file", lambda: _circuit_file(lambda p: None)() or
     __import__("circuits").Circuit.load("runs/c.json").save("runs/c.json")),
    ("Circuit discovery", "an input with +inf", _circuits_call("acdc", threshold=0.1, clean_fn=_with_inf)),
    ("Circuit discovery", "NaN weights", _circuits_call("acdc", threshold=0.1, model=_nan_model())),
    ("Circuit discovery", "a plain `nn.Module`", _circuits_call("acdc", threshold=0.1, model=torch.nn.Linear(5, 3))),
    ("Circuit discovery", "a hooked model that forgot `setup()`", lambda: _circuits_call("acdc", threshold=0.1,
                                                                                        model=_no_setup())()),
    ("Circuit discovery", "`evaluate(..., clean_labels=5)`", _circuits_call("evaluate", clean_labels=5)),
    ("Circuit discovery", "`evaluate` with label -1", _circuits_call("evaluate", clean_labels=torch.tensor([0, 1, -1, 0]))),
    ("Circuit discovery", "`eap` with a per-example metric",
     _circuits_call("eap", metric=lambda logits, full: (logits - full).pow(2).sum(-1))),
    ("Circuit discovery", "`eap_then_acdc(ablation=\"zero\")`",
     _circuits_call("eap_then_acdc", top_n=3, threshold=0.1, ablation="zero")),
    *TRANSFORMER_CASES,
]


def message(case: Callable[[], object]) -> str:
    """The error (type: message) or warning a case produces."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = case()
        except Exception as err:  # noqa: BLE001  (showing whatever the mistake produces is the point)
            return f"{type(err).__name__}: {err}"
    if isinstance(out, str) and out:
        return out
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    return f"{ours[0].category.__name__}: {ours[0].message}" if ours else "(no error)"


def render() -> str:
    from hooked_bimt import HookedMLP

    parts, section = [INTRO], None
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            Path("afile").write_text("x")
            torch.manual_seed(0)
            HookedMLP((784, 4, 10)).save("runs/m")
            for group, title, case in CASES:
                if group != section:
                    parts.append(f"\n## {group}\n")
                    section = group
                parts.append(f"\n{title}:\n\n    {message(case)}\n")
        finally:
            os.chdir(cwd)
    return "".join(parts)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if DOC.exists() and DOC.read_text() == text else 1)
    DOC.write_text(text)
    print(f"wrote {DOC}")
