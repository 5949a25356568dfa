"""``focalcal evaluate RUN``: test metrics before and after temperature scaling fitted on validation."""

from __future__ import annotations

import argparse
import contextlib

from ..engine import RunFolder, evaluate_run, write_evaluation
from ..engine.distributed import is_main_process
from .common import add_data_args, add_eval_batch_arg, echo, positive_int
from .train import print_summary


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="evaluate a run on the test split, before/after temperature scaling")
    e.add_argument("run_dir")
    e.add_argument("--n-bins", type=positive_int, help="calibration bins (default: the run's, 15)")
    e.add_argument(
        "--bin-closed", choices=["left", "right"], help="equal-width bins [lo, hi) or (lo, hi] (default: the run's)"
    )
    e.add_argument(
        "--ts-method",
        choices=["nll", "ece_grid"],
        help="the main temperature: fitted by validation NLL or the paper's ECE grid (default: the run's)",
    )
    add_data_args(e)
    add_eval_batch_arg(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    main_rank = is_main_process()  # under torchrun every rank evaluates its shard; rank 0 writes
    with folder.lock() if main_rank else contextlib.nullcontext():
        report, arrays = evaluate_run(
            folder,
            n_bins=args.n_bins,
            ts_method=args.ts_method,
            bin_closed=args.bin_closed,
            data_dir=args.data_dir,
            device=args.device or "auto",
            eval_batch_size=args.eval_batch,
            echo=echo if main_rank else None,
        )
        if main_rank:
            write_evaluation(folder, report, arrays)
            print_summary(args.run_dir, report)
    return 0
