"""``focalcal demo``: cross-entropy against FLSD-53 on the same real CIFAR-10 subset (see
:mod:`focalcal.experiments.demo`)."""

from __future__ import annotations

import argparse

from ..experiments.demo import LOSSES, run_demo
from .common import add_data_args, echo


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="train CE and FLSD-53 on the same CIFAR-10 subset and compare their calibration")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated losses (default {','.join(LOSSES)})")
    d.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: measured on this machine); --no-amp trains in float32",
    )
    d.add_argument(
        "--overwrite",
        action="store_true",
        help="replace runs of other settings in --out/<loss> (by default they are kept and the demo stops)",
    )
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10 if it is missing")
    add_data_args(d)
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    losses = tuple(s.strip() for s in args.losses.split(",") if s.strip())
    run_demo(
        args.out,
        data_dir=args.data_dir,
        device=args.device or "auto",
        amp=args.amp,
        losses=losses,
        progress=not args.no_progress,
        download=args.download,
        echo=echo,
        overwrite=args.overwrite,
    )
    return 0
