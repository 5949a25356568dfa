"""``focalcal ood RUN_DIR --ood SET [--ood SET ...]``: OOD detection and calibration under dataset shift,
before and after the run's temperature (fitted on its validation split, as ``focalcal evaluate`` does).

Writes ``ood.json``, ``ood.md`` and ``ood_roc_<score>.png`` into the run folder (see
:mod:`focalcal.evaluation.ood`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from ..data.ood import describe_ood_sets
from ..engine import RunFolder
from ..engine.runfolder import OOD, OOD_MD, ood_roc_png
from ..evaluation import score_run, write_ood
from ..metrics.ood import SCORES
from .common import add_data_args, add_eval_settings_args, eval_run_options, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ood`` sub-command to ``focalcal``'s sub-parsers."""
    description = (
        "Score the run's test split and each OOD/shifted set with softmax entropy, MSP and energy "
        "(OOD = positive class), before and after the temperature fitted on the validation split; report "
        "AUROC, AUPR-in/out, FPR@95%TPR and, on labelled shifted sets, calibration. Writes "
        f"{OOD}, {OOD_MD} and {ood_roc_png('<score>')} into RUN_DIR."
    )
    p = sub.add_parser(
        "ood", help="OOD detection and calibration under dataset shift, before/after TS", description=description
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--ood",
        action="append",
        required=True,
        metavar="SET",
        help=f"an OOD or shifted set (repeatable): {describe_ood_sets()}",
    )
    p.add_argument(
        "--scores", default=",".join(SCORES), help=f"comma-separated OOD scores (default {','.join(SCORES)})"
    )
    p.add_argument("--max-images", type=positive_int, help="score a seeded subset of at most this many images per set")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption noise and of subsets (default 0)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing data sets")
    # bins, bin rule and temperature method: as the run was evaluated (its report), else its config's
    add_eval_settings_args(p, defaults="evaluated", flags=("n_bins", "ts_method", "eval_batch"))
    add_data_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = RunFolder(args.run_dir)
    with folder.lock():
        report, arrays = score_run(
            folder,
            args.ood,
            **eval_run_options(args),
            seed=args.seed,
            max_images=args.max_images,
            download=args.download,
            scores=[s.strip() for s in args.scores.split(",") if s.strip()],
            echo=tqdm.write,
        )
        write_ood(folder, report, arrays)
    key = "entropy" if "entropy" in report["scores"] else report["scores"][0]
    t, method = report["temperature"], report["ts_method"]
    tqdm.write(f"T = {t:.3f} (validation, {method}); {key} AUROC before -> after TS:")
    for name, e in report["sets"].items():
        d = e["detection"]
        before, after = d["before"][key]["auroc"], d["after"][key]["auroc"]
        line = f"  {name:32s} {100 * before:6.2f}% -> {100 * after:6.2f}%"
        if "calibration" in e:
            c = e["calibration"]
            line += f"   ECE {100 * c['before']['ece']:.2f}% -> {100 * c['after']['ece']:.2f}%"
        tqdm.write(line)
    tqdm.write(f"report: {Path(args.run_dir) / OOD_MD}")
    return 0
