"""An evaluation's files in the run folder: ``report.json``, ``report.md``, reliability diagrams, ``logits.pt``.

The report is rendered here (Markdown) and drawn by :mod:`focalcal.plots`; the run folder
(:class:`~focalcal.engine.runfolder.RunFolder`) writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..losses import loss_label
from ..plots import reliability_grid
from .runfolder import RunFolder, reliability_png

COLUMNS = [
    ("error", "Error %"),
    ("nll", "NLL"),
    ("ece", "ECE %"),
    ("adaptive_ece", "AdaECE %"),
    ("classwise_ece", "Classwise-ECE %"),
    ("mce", "MCE %"),
    ("brier", "Brier"),
]


def metric_cells(m: dict[str, float]) -> list[str]:
    """Table cells: error and the calibration errors in %, NLL in nats, Brier as a fraction."""
    return [f"{m[k]:.4f}" if k in ("nll", "brier") else f"{100 * m[k]:.2f}" for k, _ in COLUMNS]


def markdown_table(rows: list[tuple[str, dict[str, float]]], first: str = "") -> str:
    head = "| " + " | ".join([first] + [c for _, c in COLUMNS]) + " |"
    sep = "|" + "---|" * (len(COLUMNS) + 1)
    body = ["| " + " | ".join([name] + metric_cells(m)) + " |" for name, m in rows]
    return "\n".join([head, sep, *body])


def precision_text(p: dict[str, bool] | None) -> str:
    if p is None:
        return "an unrecorded precision"
    return ("bfloat16 autocast" if p["amp"] else "float32") + (", channels_last" if p["channels_last"] else "")


def report_markdown(report: dict[str, Any], title: str) -> str:
    t = report["temperature"]
    opts = ", ".join(f"{k}={v}" for k, v in report["loss_options"].items())
    rows = [("before TS", report["test"]["before"])]
    for method, m in report["test_after_by_method"].items():
        rows.append((f"after TS ({method}, T={t[method]['value']:.3f})", m))
    lines = [
        f"# {title}",
        "",
        f"- dataset `{report['dataset']}`, model `{report['model']}`, loss `{report['loss']}`"
        + (f" ({opts})" if opts else "")
        + f", {report['epochs_trained']} epochs",
        f"- train {report['n_train']}, validation {report['n_val']}, test {report['n_test']} images;"
        f" {report['n_bins']} {report.get('binning', 'equal-width bins [lo, hi)')}",
        f"- train accuracy reached (un-augmented training images): {100 * (1 - report['train']['error']):.2f}%"
        if "train" in report
        else "",
        f"- trained in {precision_text(report.get('training_precision'))}; evaluated in float32",
        f"- temperature fitted on the validation split only (main method: `{report['ts_method']}`;"
        " `nll` minimises validation NLL over log T, `ece_grid` is the paper's grid 0.1..10 by validation ECE)",
        "",
        "## Test split",
        "",
        markdown_table(rows),
        "",
        "Error and calibration errors in %, NLL in nats, Brier score (sum over classes) as a fraction.",
        "",
        "![before](reliability_before.png) ![after](reliability_after.png)",
        "",
    ]
    return "\n".join(lines)


def write_evaluation(run_dir: str | Path | RunFolder, report: dict[str, Any], arrays: dict[str, Any]) -> list[Path]:
    """Write report.json, report.md, reliability_before/after.png and logits.pt; returns the paths."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    run.write_report(report, report_markdown(report, f"Evaluation of {run.path.name}"))
    paths = [run / "report.json", run / "report.md"]
    label = loss_label(report["loss"], report["loss_options"])
    for when in ("before", "after"):
        title = f"{label}: {when} TS" + (f" (T={arrays['temperature']:.2f})" if when == "after" else "")
        fig = reliability_grid([(title, arrays[f"bins_{when}"], report["test"][when])])
        paths.append(run.save_figure(fig, reliability_png(when)))
    run.write_logits(arrays)
    paths.append(run / "logits.pt")
    return paths
