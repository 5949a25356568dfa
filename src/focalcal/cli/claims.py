"""``focalcal claims RUNS...``: the paper's claims measured on runs over seeds, as a results page (see
:mod:`focalcal.experiments.claims`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..experiments.claims import write_page


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "claims",
        help="measure the paper's claims on runs over seeds and write a results page",
        description="Export the runs' summaries (config, log, report, OOD results) to OUT/runs, rebuild every "
        "number from them, and write OUT/claims.md with the claims table (paired differences over seeds, 95% "
        "intervals), the paper's tables and Figs. 2-7.",
    )
    c.add_argument("runs", nargs="+", help="run folders, sweep roots or glob patterns (e.g. runs/cpu)")
    c.add_argument("--out", type=Path, default=Path("docs/claims"), help="output folder (default docs/claims)")
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier page in --out (its runs/ export and page files; nothing else is removed)",
    )
    c.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = write_page(args.runs, args.out, overwrite=args.overwrite)
    for line in result["skipped"]:
        print(f"focalcal claims: skipped {line}", file=sys.stderr)
    for claim in result["claims"]:
        print(f"claim {claim.number}: {claim.summary}: {claim.text}")
    print(args.out / "claims.md")
    return 0
