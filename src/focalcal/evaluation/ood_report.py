"""Render an OOD report (:func:`focalcal.evaluation.ood.score_run`) as Markdown and ROC figures, and write them
into the run folder (``ood.json``, ``ood.md``, ``ood_roc_<score>.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engine.runfolder import OOD, OOD_MD, RunFolder, ood_roc_png
from ..losses import loss_label
from ..metrics.ood import TPR_LEVEL
from ..plots.roc import roc_grid
from .ood import STAGES
from .report import markdown_table


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def ood_markdown(report: dict[str, Any], title: str) -> str:
    """The tables of ``ood.md``: detection with entropy, AUROC of every score, calibration under shift."""
    t = report["temperature"]
    sets = report["sets"]
    lines = [
        f"# {title}",
        "",
        f"- dataset `{report['dataset']}`, model `{report['model']}`, loss `{report['loss']}`, "
        f"{report['epochs_trained']} epochs; in-distribution: {report['in_distribution']['name']} "
        f"({report['in_distribution']['n']} images)",
        f"- temperature T = {t:.3f}, fitted on the validation split ({report['n_val']} images) by "
        f"`{report['ts_method']}`; logits: {report['logits_source']}",
        f"- {report['convention']}",
        "",
        "## Detection with softmax entropy (the paper's score), in %",
        "",
        "| set | kind | N | AUROC before | AUROC after | AUPR-in before | AUPR-in after | AUPR-out before"
        " | AUPR-out after | FPR@95%TPR before | FPR@95%TPR after |",
        "|" + "---|" * 11,
    ]
    key = "entropy" if "entropy" in report["scores"] else report["scores"][0]
    for name, e in sets.items():
        d = e["detection"]
        cells = [_pct(d[st][key][m]) for m in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr") for st in STAGES]
        lines.append(f"| {name} | {e['kind']} | {e['n']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## AUROC % of every score (before -> after TS)",
        "",
        "| set | " + " | ".join(report["scores"]) + " |",
        "|" + "---|" * (len(report["scores"]) + 1),
    ]
    for name, e in sets.items():
        d = e["detection"]
        cells = [f"{_pct(d['before'][s]['auroc'])} -> {_pct(d['after'][s]['auroc'])}" for s in report["scores"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    shifted = [(n, e) for n, e in sets.items() if "calibration" in e]
    if shifted:
        rows = []
        for name, cal in [(report["in_distribution"]["name"], report["in_distribution"]["calibration"])] + [
            (n, e["calibration"]) for n, e in shifted
        ]:
            rows += [(f"{name}, before TS", cal["before"]), (f"{name}, after TS", cal["after"])]
        lines += [
            "",
            "## Calibration under dataset shift",
            "",
            markdown_table(rows, "set"),
            "",
            "Error and calibration errors in %, NLL in nats, Brier score as a fraction; the same T "
            "(fitted on clean validation data) is applied to every set.",
        ]
    lines += ["", *[f"![ROC {s}]({ood_roc_png(s)})" for s in report["scores"]], ""]
    return "\n".join(lines)


def write_ood(run_dir: str | Path | RunFolder, report: dict[str, Any], arrays: dict[str, Any]) -> list[Path]:
    """Write ``ood.json``, ``ood.md`` and ``ood_roc_<score>.png`` into the run folder; returns the paths."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    run.write_ood(report, ood_markdown(report, f"OOD and dataset-shift evaluation of {run.path.name}"))
    paths = [run / OOD, run / OOD_MD]
    t = report["temperature"]
    label = loss_label(report["loss"], report["loss_options"])
    for score in report["scores"]:
        panels = []
        for name, by_score in arrays["curves"].items():
            det = report["sets"][name]["detection"]
            curves = {}
            for st in STAGES:
                head = f"{st} TS" + (f" (T={t:.2f})" if st == "after" else "")
                curves[f"{head}: AUROC {_pct(det[st][score]['auroc'])}%"] = by_score[score][st]
            panels.append((name, curves))
        fig = roc_grid(
            panels, tpr_level=TPR_LEVEL, suptitle=f"{label} ({report['dataset']} test vs OOD): {score} score"
        )
        paths.append(run.save_figure(fig, ood_roc_png(score)))
    return paths
