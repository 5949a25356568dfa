"""``focalcal table RUNS...``: the paper's tables (and Figs. 6-7) from run folders (see
:mod:`focalcal.experiments.table`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..atomic import atomic_write_csv, atomic_write_text
from ..engine.runfolder import REPORT
from ..experiments.table import FIG7_PNG, build, csv_rows, fig6, fig7, fig7_name, latex, markdown
from ..plots import save_figure


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "table",
        help="the paper's tables from run folders: mean and 95%% interval over seeds (Markdown, CSV, LaTeX)",
        description=f"Group evaluated runs (run folders with {REPORT}, found under each path or glob) "
        "by dataset, model and loss; write table.md, table.csv, table.tex and the figures fig6 (error bars) and "
        f"{FIG7_PNG.format(ood_set='<set>').removesuffix('.png')} (ROC curves per OOD set) as PNG and PDF into --out.",
    )
    t.add_argument("runs", nargs="+", help="run folders, sweep roots or glob patterns")
    t.add_argument("--out", type=Path, default=Path("tables"), help="output folder (default ./tables)")
    t.add_argument("--no-bootstrap", action="store_true", help="no bootstrap interval for one-run cells (faster)")
    t.add_argument("--no-figures", action="store_true", help="tables only")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tables = build(args.runs, bootstrap=not args.no_bootstrap)
    for line in tables.skipped:
        print(f"focalcal table: skipped {line}", file=sys.stderr)
    out = args.out
    md = markdown(tables)
    atomic_write_text(out / "table.md", md)
    atomic_write_text(out / "table.tex", latex(tables))
    atomic_write_csv(out / "table.csv", csv_rows(tables))
    written = [out / "table.md", out / "table.csv", out / "table.tex"]
    if not args.no_figures:
        figures = [("fig6.png", fig6(tables))] + [(fig7_name(s), fig7(tables, s)) for s in tables.ood_sets]
        for name, fig in figures:
            written += save_figure(fig, out / name, formats=("pdf",))
    print(md)
    for p in written:
        print(p)
    return 0
