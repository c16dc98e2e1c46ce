"""The ``hooked-bimt`` command line (also ``python -m hooked_bimt``).

Subcommands:
    train      train one model and save it (``TrainResult.save``)
    reproduce  the paper's study, registered when ``hooked_bimt.study.reproduce`` exists; that module
               defines ``add_arguments(subparser)`` and ``run(args) -> int``
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Sequence

# Subcommands living in other modules: name -> (module, help). Imported only when the parser is built.
PLUGINS = {"reproduce": ("hooked_bimt.study.reproduce", "reproduce the paper's study (Nainani 2024)")}


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from hooked_bimt.regimes import REGIMES

    p = subparsers.add_parser("train", help="train one model on MNIST and save it")
    p.add_argument("--regime", required=True, choices=list(REGIMES), help="training regime")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for model.safetensors + config.json")
    p.add_argument("--preset", choices=["quick", "paper"], default="paper")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: a small MLP gains nothing from more)"
    )
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import torch

    from hooked_bimt.train import TrainConfig, train

    if args.threads < 1:
        raise SystemExit(f"hooked-bimt train: --threads must be positive, got {args.threads}")
    torch.set_num_threads(args.threads)
    config = TrainConfig.quick() if args.preset == "quick" else TrainConfig.paper()
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit(f"hooked-bimt train: --steps must be positive, got {args.steps}")
        config = dataclasses.replace(config, steps=args.steps, eval_every=min(config.eval_every, args.steps))
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("hooked-bimt train: --device cuda requested but CUDA is not available")
    result = train(args.regime, config, seed=args.seed, device=args.device, progress=not args.no_progress)
    path = result.save(args.out)
    m = result.metrics
    print(
        f"{args.regime} seed {args.seed}: test accuracy {m['test_accuracy']:.4f} after {m['steps']} steps "
        f"({m['train_seconds']:.1f} s, {1e3 * m['seconds_per_step']:.3f} ms/step, {m['swaps']} swaps); saved to {path}"
    )
    return 0


def _add_plugins(subparsers: argparse._SubParsersAction) -> None:
    for name, (module_name, help_text) in PLUGINS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.startswith(err.name):
                continue  # that part of the toolkit is not installed: no such subcommand
            raise
        p = subparsers.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hooked-bimt", description="BIMT-trained hooked MLPs and circuit discovery")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_plugins(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hooked-bimt``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
