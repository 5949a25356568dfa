"""``focalcal evaluate RUN``: test metrics before and after temperature scaling fitted on validation."""

from __future__ import annotations

import argparse
import contextlib

from ..engine import RunFolder
from ..engine.distributed import is_main_process
from ..evaluation import evaluate_run, write_evaluation
from .common import add_data_args, add_eval_settings_args, echo, eval_run_options
from .train import print_summary


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="evaluate a run on the test split, before/after temperature scaling")
    e.add_argument("run_dir")
    add_eval_settings_args(e, defaults="run")  # --n-bins, --bin-closed, --ts-method, --eval-batch
    add_data_args(e)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    main_rank = is_main_process()  # under torchrun every rank evaluates its shard; rank 0 writes
    with folder.lock() if main_rank else contextlib.nullcontext():
        report, arrays = evaluate_run(folder, **eval_run_options(args), echo=echo if main_rank else None)
        if main_rank:
            write_evaluation(folder, report, arrays)
            print_summary(args.run_dir, report)
    return 0
