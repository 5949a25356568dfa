"""``focalcal reproduction RUNS...``: the paper's text experiments beside its published numbers, as a page
(see :mod:`focalcal.experiments.reproduction`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..experiments.reproduction import PAGE, write_text_page
from .common import add_key_values_arg


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "reproduction",
        help="set text runs beside the paper's published numbers and write a results page",
        description="Export the runs' summaries to OUT/text, rebuild every number from them, and write "
        f"OUT/{PAGE}: per data set and loss, the mean over seeds with a 95% interval of test error, ECE before "
        "and after temperature scaling, T, AdaECE, Classwise-ECE and NLL, beside the paper's number and whether "
        "it lies inside; then the paper's text claims as paired differences over seeds.",
    )
    c.add_argument("runs", nargs="+", help="run folders, sweep roots or glob patterns (e.g. runs/paper_text)")
    c.add_argument("--out", type=Path, default=Path("docs/reproduction"), help="output folder (docs/reproduction)")
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="rewrite an earlier page in --out (its text/ export and text.md; see --drop-earlier)",
    )
    c.add_argument(
        "--drop-earlier",
        action="store_true",
        help="build the page from RUNS alone (default: an earlier export's runs that RUNS hold no run of are kept)",
    )
    add_key_values_arg(
        c, "--not-run", "what the page says for a data set without runs (repeatable)", metavar="DATASET=WHY"
    )
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    not_run = dict(item.split("=", 1) for item in args.not_run if "=" in item)
    result = write_text_page(
        args.runs, args.out, overwrite=args.overwrite, not_run=not_run, keep_earlier=not args.drop_earlier
    )
    if result["kept"]:
        print(
            f"focalcal reproduction: kept {len(result['kept'])} runs of the earlier export that the runs given do "
            f"not hold ({', '.join(result['kept'][:4])}{' ...' if len(result['kept']) > 4 else ''}; --drop-earlier "
            "leaves them out)",
            file=sys.stderr,
        )
    for line in result["skipped"]:
        print(f"focalcal reproduction: skipped {line}", file=sys.stderr)
    for claim in result["claims"]:
        for row in claim.rows:
            print(f"{claim.dataset}: {row['difference']}: {row['mean']:+.2f} points, {row['verdict']}")
    print(args.out / PAGE)
    return 0
