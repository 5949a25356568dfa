"""``focalcal``: train, evaluate and compare calibrated classifiers from the command line.

Sub-commands: ``train``, ``evaluate``, ``demo``, ``list``, and those of ``_EXTRA_COMMANDS``.
Errors in user input are printed as one line
(``focalcal: error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..data import DATA_ENV, DATASETS, DataError

EXIT_USAGE = 2
# modules of focalcal.cli with a `register(subparsers, add_data_args)` function, e.g. `ood`, `plot`
_EXTRA_COMMANDS: tuple[str, ...] = ("plot", "ood")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"data root (default: ${DATA_ENV}, else ./data); CIFAR-10 is looked for in "
        "<root>/cifar10/{train,test}/<class>/*.png or torchvision's <root>/cifar-10-batches-py",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")


def _count_or_fraction(text: str) -> int | float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return int(value) if value >= 1 and value.is_integer() else value


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = argparse.ArgumentParser(prog="focalcal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a classifier with a calibration loss, then evaluate it")
    t.add_argument("--preset", help="a YAML config (a file, or a name from `focalcal list`); flags override it")
    t.add_argument("--dataset", help=f"one of: {', '.join(DATASETS)} (default cifar10)")
    t.add_argument("--model", help="a model name from `focalcal list` (default resnet20)")
    t.add_argument("--loss", help="a loss name from `focalcal list` (default ce)")
    t.add_argument(
        "--loss-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loss option, e.g. --loss-opt gamma=3 (repeatable)",
    )
    t.add_argument("--epochs", type=int, help="epochs (default 350); lr milestones scale with it")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--grad-clip", type=float, help="gradient-norm clip (default 2, the paper's); 0 disables")
    t.add_argument("--seed", type=int)
    t.add_argument("--train-size", type=int, help="train on a subset of this many images")
    t.add_argument(
        "--val-size",
        type=_count_or_fraction,
        help="validation images held out of train: a count (default 5000) or a fraction like 0.1",
    )
    t.add_argument("--test-size", type=int, help="evaluate on a seeded subset of the test split")
    t.add_argument("--image-size", type=int, help="resize image-folder images to this square size")
    t.add_argument("--n-bins", type=int, help="calibration bins (default 15)")
    t.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast of the forward pass; losses and metrics stay float32 (default: on where bf16 "
        "is native: CUDA compute capability 8.0+, and CPUs with AMX-BF16)",
    )
    t.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: on for CUDA, and on CPU together with --amp)",
    )
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    t.add_argument(
        "--dynamics-train-size",
        type=int,
        help="un-augmented train images evaluated each epoch for the dynamics log (0: off)",
    )
    t.add_argument(
        "--dynamics-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate the test split each epoch for the dynamics log (default on)",
    )
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--download", action="store_true", help="let torchvision download CIFAR if it is missing")
    t.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_args(t)
    t.set_defaults(func=commands.cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run on the test split, before/after temperature scaling")
    e.add_argument("run_dir")
    e.add_argument("--n-bins", type=int, help="calibration bins (default: the run's, 15)")
    e.add_argument(
        "--ts-method",
        default="nll",
        choices=["nll", "ece_grid"],
        help="temperature fitted on validation by NLL (default) or the paper's grid by ECE",
    )
    _add_data_args(e)
    e.set_defaults(func=commands.cmd_evaluate)

    d = sub.add_parser("demo", help="train CE and FLSD-53 on the same CIFAR-10 subset and compare them")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=None)
    d.add_argument("--train-size", type=int, default=None)
    d.add_argument("--val-size", type=_count_or_fraction, default=None)
    d.add_argument("--model", default=None)
    d.add_argument("--losses", default=None, help="comma-separated losses to compare (default ce,flsd53)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10 if it is missing")
    _add_data_args(d)
    d.set_defaults(func=commands.cmd_demo)

    ls = sub.add_parser("list", help="list datasets, models, losses and presets")
    ls.set_defaults(func=commands.cmd_list)

    # sub-commands that live in their own modules register themselves
    for name in _EXTRA_COMMANDS:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(sub, _add_data_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, TypeError, OSError) as exc:  # OSError: missing files, permissions, full disk
        print(f"focalcal: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("focalcal: interrupted; resume with `focalcal train --resume --out RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
