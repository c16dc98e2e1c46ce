"""The ``hooked-bimt`` command line (also ``python -m hooked_bimt``).

Subcommands:
    train      train one model and save it (``TrainResult.save``)
    reproduce  the paper's study, registered when ``hooked_bimt.study.reproduce`` exists; that module
               defines ``add_arguments(subparser)`` and ``run(args) -> int``

Nothing heavy is imported to build the parser: a plugin's module (and torch) loads only when its
subcommand is the one being run, so ``hooked-bimt --help`` answers without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import sys
from typing import Any, Sequence

# Subcommands living in other modules: name -> (module, help). Imported only when the parser is built.
PLUGINS = {"reproduce": ("hooked_bimt.study.reproduce", "reproduce the paper's study (Nainani 2024)")}


# What Ctrl-C leaves behind, per subcommand (every write is atomic: no partial file is ever left).
INTERRUPTED = {
    "train": "Nothing was saved: the model is written to {out} only when training ends. Run the same command "
             "again to train from the start (--preset quick or --steps N for a shorter run).",
    "reproduce": "Every model and discovery unit finished so far is kept in {out}; run the same command again to "
                 "resume (only what is missing is redone).",
}


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    from hooked_bimt.regimes import REGIMES

    p = subparsers.add_parser("train", help="train one model on MNIST and save it")
    p.add_argument("--regime", required=True, choices=list(REGIMES), help="training regime")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for model.safetensors + config.json")
    p.add_argument("--force", action="store_true", help="replace a model already saved in --out")
    p.add_argument("--preset", choices=["quick", "paper"], default="paper",
                   help="default paper: TrainConfig.paper() (SPEC 2: 40,000 steps, about 10 minutes on a CPU core); "
                   "quick: TrainConfig.quick() (1,200 steps on 10,000 images, seconds; not the study's quick "
                   "preset); the settings used are printed and saved in config.json")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: a small MLP gains nothing from more)"
    )
    p.set_defaults(func=_run_train)


def _train_setup(args: argparse.Namespace):
    """Everything checked before training: threads, steps, the device's spelling and the output directory first,
    torch-free (an argument error answers at once); then the preset and whether CUDA is there (imports torch)."""
    from circuits.paths import check_output_dir
    from hooked_bimt.files import CONFIG, WEIGHTS
    from hooked_bimt.validate import check_device, check_device_name

    _check_counts(args)
    check_device_name(args.device)
    check_output_dir(args.out, overwrite=args.force, holds=(WEIGHTS, CONFIG))
    from hooked_bimt import TrainConfig

    config = TrainConfig.quick() if args.preset == "quick" else TrainConfig.paper()
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps, eval_every=min(config.eval_every, args.steps))
    return config, check_device(args.device)


def _check_counts(args: argparse.Namespace) -> None:
    """The plain-number arguments, checked before torch is imported (an argument error answers at once)."""
    if args.threads < 1:
        raise ValueError(f"--threads must be positive, got {args.threads}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be positive, got {args.steps}")


def _run_train(args: argparse.Namespace, data: Any = None, hook: Any = None) -> int:
    try:
        config, device = _train_setup(args)
    except (ValueError, FileExistsError) as err:
        print(f"hooked-bimt train: error: {err}", file=sys.stderr)
        return 2
    import torch

    from hooked_bimt.training import settings_line, train

    torch.set_num_threads(args.threads)
    # train() prints its settings with its progress bar; without the bar, the CLI prints them
    print(f"preset={args.preset}" if not args.no_progress else
          settings_line(args.regime, args.seed, device, config, preset=args.preset), flush=True)
    from hooked_bimt.memory import TrainingMemoryMeter

    # the peak training memory (SPEC 5) is recorded in config.json, as the study records it, unless a caller's hook
    result = train(args.regime, config, seed=args.seed, device=device, data=data, progress=not args.no_progress,
                   hook=TrainingMemoryMeter() if hook is None else hook)
    path = result.save(args.out, overwrite=args.force)
    m = result.metrics
    print(
        f"{args.regime} seed {args.seed}: test accuracy {m['test_accuracy']:.4f} after {m['steps']} steps "
        f"({m['train_seconds']:.1f} s, {1e3 * m['seconds_per_step']:.3f} ms/step, {m['swaps']} swaps); saved to {path}"
    )
    return 0


def _add_plugins(subparsers: argparse._SubParsersAction, command: str | None) -> None:
    for name, (module_name, help_text) in PLUGINS.items():
        if name != command:  # listed by name only: its module loads when it is the command being run
            if importlib.util.find_spec(module_name.rsplit(".", 1)[0]) is not None:
                subparsers.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.startswith(err.name):
                continue  # that part of the toolkit is not installed: no such subcommand
            raise
        p = subparsers.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.run)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command`` (the subcommand about to run) is the only plugin whose module is imported."""
    parser = argparse.ArgumentParser(prog="hooked-bimt", description="BIMT-trained hooked MLPs and circuit discovery")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_train(subparsers)
    _add_plugins(subparsers, command)
    return parser


def main(argv: Sequence[str] | None = None, *, data: Any = None, hook: Any = None) -> int:
    """Entry point of ``hooked-bimt``; returns the exit status.

    ``data`` and ``hook`` go to ``train()`` when the command is ``train``: (train, test) splits to train on instead
    of reading MNIST, and a ``hooked_bimt.training.StepsHook`` (the tests train on a few random images and watch
    or interrupt the run through them)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    run = functools.partial(args.func, data=data, hook=hook) if args.func is _run_train else args.func
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print(f"\nhooked-bimt {args.command}: interrupted. {INTERRUPTED[args.command].format(out=args.out)}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
