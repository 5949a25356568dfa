"""``focalcal plot FIGURE``: the paper's analysis figures (Figs. 1-5) for your own runs, from their logs.

Each figure is written as ``NAME.png`` and ``NAME.pdf`` into ``--out``, with its data as ``NAME.csv`` beside
it (a tidy table, one row per run per epoch; per gamma and p for ``g``; per run, stage and bin for
``reliability``) so it can be re-plotted elsewhere. Nothing here runs a model: the dynamics figures read
``log.jsonl``/``config.json``, the reliability diagrams the ``logits.pt``/``report.json`` that
``focalcal evaluate`` saved.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_csv
from ..engine.runfolder import CONFIG, RunFolder
from ..errors import CheckpointError, FocalcalError, InputError
from ..evaluation.runlog import (
    DYNAMICS_COLUMNS,
    TEST_NLL_COLUMNS,
    WEIGHT_NORM_COLUMNS,
    Reliability,
    RunLog,
    curves_of,
    epoch_rows,
    read_reliability,
    read_runs,
    reliability_panels,
    reliability_rows,
    require_columns,
)
from ..losses.analysis import FIG4_GAMMAS, g_table
from ..plots import (
    analysis_sheet,
    g_figure,
    nll_entropy_figure,
    nll_over_epochs_figure,
    reliability_grid,
    save_figure,
    weight_norm_figure,
)
from .common import add_eval_settings_args

_HINT_TEST = "train with --dynamics-test-size > 0 (the default is the whole test split) to log it each epoch"
_HINT_TRAIN = "train with --dynamics-train-size > 0 to log the un-augmented train subset"


# ------------------------------------------------------------------------------------------------ output
def _save(fig, out: Path, name: str, rows: Sequence[dict[str, Any]] | None) -> list[Path]:
    paths = save_figure(fig, out / f"{name}.png", formats=("pdf",))
    if rows is not None:
        paths.append(atomic_write_csv(out / f"{name}.csv", rows))
    return paths


def _runs(args: argparse.Namespace) -> list[RunLog]:
    """The runs at or under the RUN paths (run folders, or folders holding runs such as the demo's), read once
    per command; a run that cannot be read (a damaged config.json or log) is left out with a note on stderr."""
    if getattr(args, "_run_logs", None) is None:
        folders, notes = RunFolder.find(args.runs)
        if not folders:
            raise InputError(
                f"no run folder (a folder with {CONFIG}, made by `focalcal train --out DIR`) at or under "
                + ", ".join(map(str, args.runs))
            )
        args._run_logs = read_runs([f.path for f in folders], args.label or None, skipped=notes)
        for line in notes:
            print(f"focalcal plot: skipped {line}", file=sys.stderr)
    return args._run_logs


def _reliability(args: argparse.Namespace) -> list[Reliability]:
    """The runs' reliability diagrams (read once per command); a run without its evaluation (no logits.pt, e.g.
    killed while evaluating) or with a damaged one is left out with a note on stderr, the others are drawn.

    Raises:
        InputError: no run has a readable evaluation (names each run and why).
    """
    if getattr(args, "_reliability", None) is None:
        items, notes = [], []
        for run in _runs(args):
            try:
                items.append(read_reliability(run, n_bins=args.n_bins))
            except (FileNotFoundError, CheckpointError) as exc:
                notes.append(str(exc))
        if not items:
            raise InputError("; ".join(notes))
        for line in notes:
            print(f"focalcal plot: skipped reliability: {line}", file=sys.stderr)
        args._reliability = items
    return args._reliability


def plot_nll_entropy(args: argparse.Namespace) -> list[Path]:
    runs = _runs(args)
    require_columns(runs, ["test_nll"], _HINT_TEST)
    require_columns(runs, ["train_eval_nll"], _HINT_TRAIN)
    fig = nll_entropy_figure(curves_of(runs, DYNAMICS_COLUMNS), log_nll=args.log_nll)
    return _save(fig, args.out, "nll_entropy", epoch_rows(runs, DYNAMICS_COLUMNS))


def plot_test_nll(args: argparse.Namespace) -> list[Path]:
    runs = _runs(args)
    require_columns(runs, ["test_nll"], _HINT_TEST)
    fig = nll_over_epochs_figure(curves_of(runs, TEST_NLL_COLUMNS), log_nll=args.log_nll)
    return _save(fig, args.out, "test_nll", epoch_rows(runs, TEST_NLL_COLUMNS))


def plot_weight_norm(args: argparse.Namespace) -> list[Path]:
    runs = _runs(args)
    require_columns(runs, ["fc_weight_norm"], "it is logged by every focalcal training run")
    fig = weight_norm_figure(curves_of(runs, WEIGHT_NORM_COLUMNS))
    return _save(fig, args.out, "weight_norm", epoch_rows(runs, WEIGHT_NORM_COLUMNS))


def plot_g(args: argparse.Namespace) -> list[Path]:
    p, values, thresholds, rows = g_table(args.gammas, args.points)
    return _save(g_figure(p, values, thresholds), args.out, "g", rows)


def plot_reliability(args: argparse.Namespace) -> list[Path]:
    items = _reliability(args)
    fig = reliability_grid(reliability_panels(items), ncols=None if len(items) <= 3 else 4)
    return _save(fig, args.out, "reliability", reliability_rows(items))


def plot_all(args: argparse.Namespace) -> list[Path]:
    """Every figure that the runs' logs allow, each on its own, then the combined sheet; every figure that
    cannot be drawn is named on stderr with the reason (e.g. runs trained without the per-epoch test pass)."""
    paths: list[Path] = []
    skipped: list[str] = []
    figures = (
        ("nll-entropy", plot_nll_entropy),
        ("test-nll", plot_test_nll),
        ("g", plot_g),
        ("weight-norm", plot_weight_norm),
        ("reliability", plot_reliability),
    )
    for name, draw in figures:
        try:
            paths += draw(args)
        except (FocalcalError, FileNotFoundError) as exc:
            skipped.append(f"{name}: {exc}")
    runs = _runs(args)
    drawn = {p.stem for p in paths}
    if {"nll_entropy", "test_nll", "weight_norm"} <= drawn:
        panels = reliability_panels(_reliability(args)) if "reliability" in drawn else []
        p, values, thresholds, _ = g_table(args.gammas, args.points)
        curves = curves_of(runs, DYNAMICS_COLUMNS + TEST_NLL_COLUMNS + WEIGHT_NORM_COLUMNS)
        sheet = analysis_sheet(
            curves, p=p, g_values=values, thresholds=thresholds, reliability=panels, log_nll=args.log_nll
        )
        paths += _save(sheet, args.out, "sheet", None)
    else:
        skipped.append("sheet: it needs the nll-entropy, test-nll and weight-norm figures")
    for line in skipped:
        print(f"focalcal plot: skipped {line}", file=sys.stderr)
    return paths


# ------------------------------------------------------------------------------------------------ CLI
def _gammas(text: str) -> list[float]:
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _figure_parser(
    sub, name: str, help: str, func, *, runs: bool = True, g: bool = False, bins: bool = False, log_nll: bool = False
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    if runs:
        p.add_argument(
            "runs",
            nargs="+",
            type=Path,
            metavar="RUN",
            help="run folders (written by focalcal train), or folders holding runs (e.g. runs/demo)",
        )
        p.add_argument(
            "--label",
            action="append",
            default=[],
            help="legend label, once per run in order (default: the loss and its gamma)",
        )
    p.add_argument("--out", type=Path, default=Path("plots"), help="output folder (default ./plots)")
    if g:
        p.add_argument(
            "--gammas", type=_gammas, default=list(FIG4_GAMMAS), help="comma-separated gammas (default 1,2,3,4,5)"
        )
        p.add_argument("--points", type=int, default=501, help="values of p in [0, 1] (default 501)")
    if bins:
        add_eval_settings_args(p, defaults="report", flags=("n_bins",))  # the reliability diagrams' bins
    if log_nll:
        p.add_argument("--log-nll", action="store_true", help="logarithmic NLL axes (Figs. 2 and 3)")
    p.set_defaults(func=_command(func))
    return p


def _command(func):
    def run(args: argparse.Namespace) -> int:
        for path in func(args):
            print(path)
        return 0

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``focalcal plot {nll-entropy,test-nll,g,weight-norm,reliability,all}`` (run folders only, no data)."""
    plot = subparsers.add_parser(
        "plot",
        help="draw the paper's analysis figures (Figs. 1-5) from run logs",
        description="Draw the paper's analysis figures (Figs. 1-5) for your own "
        "runs from their logs, as PNG + PDF with the data as CSV.",
    )
    sub = plot.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    _figure_parser(
        sub,
        "nll-entropy",
        "Fig. 2: NLL and entropy of correct/incorrect train and test samples",
        plot_nll_entropy,
        log_nll=True,
    )
    _figure_parser(sub, "test-nll", "Fig. 3: test NLL over epochs for several runs", plot_test_nll, log_nll=True)
    _figure_parser(sub, "g", "Fig. 4: g(p, gamma) against p, with g = 1 and its thresholds", plot_g, runs=False, g=True)
    _figure_parser(sub, "weight-norm", "Fig. 5: last linear layer's weight norm over epochs", plot_weight_norm)
    _figure_parser(
        sub,
        "reliability",
        "Fig. 1: reliability diagrams before / after temperature scaling",
        plot_reliability,
        bins=True,
    )
    _figure_parser(
        sub,
        "all",
        "every figure (Figs. 1-5) on its own and on one combined sheet",
        plot_all,
        g=True,
        bins=True,
        log_nll=True,
    )
