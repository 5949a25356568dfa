"""An evaluation's files in the run folder: ``report.json``, ``report.md``, reliability diagrams, ``logits.pt``.

The report is rendered here (Markdown) and drawn by :mod:`focalcal.plots`; the run folder
(:class:`~focalcal.engine.runfolder.RunFolder`) writes the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engine.runfolder import LOGITS, REPORT, REPORT_MD, RunFolder, reliability_png
from ..losses import loss_label
from ..plots import reliability_grid

COLUMNS = [
    ("error", "Error %"),
    ("nll", "NLL"),
    ("ece", "ECE %"),
    ("adaptive_ece", "AdaECE %"),
    ("classwise_ece", "Classwise-ECE %"),
    ("mce", "MCE %"),
    ("brier", "Brier"),
]


def main_temperature(report: Mapping[str, Any]) -> float:
    """The temperature of an evaluation report's main method: ``report["temperature"][report["ts_method"]]
    ["value"]`` (a positive float, no unit; the logits are divided by it).

    Args:
        report: an evaluation report (``report.json``, as :func:`~focalcal.evaluation.evaluate_run` returns it).

    Raises:
        KeyError: the report has no ``ts_method`` or no temperature of that method (not an evaluation report, or
            one written before these entries); readers of run folders turn it into a
            :class:`~focalcal.errors.CheckpointError` naming the file.
    """
    return float(report["temperature"][report["ts_method"]]["value"])


def tracker_scalars(report: Mapping[str, Any]) -> dict[str, float]:
    """The evaluation's numbers for TensorBoard / Weights & Biases: ``test_before_ts/<metric>`` and
    ``test_after_ts/<metric>`` (the report's test metrics: fractions, NLL in nats) and ``temperature``
    (:func:`main_temperature`).

    Raises:
        KeyError: as :func:`main_temperature`, or the report has no ``test`` metrics.
    """
    out = {f"test_{stage}_ts/{k}": float(v) for stage in ("before", "after") for k, v in report["test"][stage].items()}
    out["temperature"] = main_temperature(report)
    return out


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


def selection_lines(report: dict[str, Any]) -> list[str]:
    """The epoch whose weights were evaluated, when training selected one (``select_epoch: best_val_acc``)."""
    if report.get("select_epoch", "last") == "last":
        return []
    return [f"- weights of epoch {report['selected_epoch']} (the best validation accuracy of the epochs trained)"]


def inputs_lines(info: dict[str, Any] | None) -> list[str]:
    """What a text run's inputs were: the word vectors, their dimension, the out-of-vocabulary words, and what
    the tokenizer (vocabulary) was fitted on."""
    if not info:
        return []
    lines = []
    if "word_vectors" in info:
        oov = info.get("oov_words")
        frac = info.get("oov_fraction")
        lines.append(
            f"- word vectors `{info['word_vectors']}`, {info.get('embedding_dim')} dimensions; "
            f"{oov} of {info.get('vocabulary_size')} vocabulary words out of vocabulary"
            + (f" ({100 * frac:.2f}%)" if isinstance(frac, (int, float)) else "")
            + f", their rows {info.get('oov_init')}"
        )
    if "tokenizer_fit_on" in info:
        fit = info["tokenizer_fit_on"]
        said = {"train": "the training split", "all": "every split, test included (as the paper's code)"}
        lines.append(f"- tokenizer / vocabulary fitted on {said.get(fit, repr(fit))} (fit_on={fit})")
    if "root_logits" in info:
        lines.append(f"- the table's metrics: {info['root_logits']}")
    return lines


def extra_lines(extra: dict[str, Any] | None) -> list[str]:
    """A data set's own test metrics (e.g. binary SST's ECE with the paper's confidence), labelled."""
    lines = []
    for name, m in (extra or {}).items():
        if not isinstance(m, dict) or "before" not in m:
            continue
        lines += [
            f"**{name.replace('_', ' ')}**: {m.get('description', '')}: ECE {100 * m['before']['ece']:.2f}% before "
            f"TS, {100 * m['after']['ece']:.2f}% after TS.",
            "",
        ]
    return lines


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
        *selection_lines(report),
        f"- train {report['n_train']}, validation {report['n_val']}, test {report['n_test']}"
        f" {report.get('samples', 'images')}; {report['n_bins']} {report.get('binning', 'equal-width bins [lo, hi)')}",
        *inputs_lines(report.get("inputs")),
        f"- train accuracy reached (un-augmented training {report.get('samples', 'images')}): "
        f"{100 * (1 - report['train']['error']):.2f}%"
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
        *extra_lines(report.get("test_extra")),
        f"![before]({reliability_png('before')}) ![after]({reliability_png('after')})",
        "",
    ]
    return "\n".join(lines)


def write_evaluation(run_dir: str | Path | RunFolder, report: dict[str, Any], arrays: dict[str, Any]) -> list[Path]:
    """Write report.json, report.md, reliability_before/after.png and logits.pt; returns the paths."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    run.write_report(report, report_markdown(report, f"Evaluation of {run.path.name}"))
    paths = [run / REPORT, run / REPORT_MD]
    label = loss_label(report["loss"], report["loss_options"])
    for when in ("before", "after"):
        title = f"{label}: {when} TS" + (f" (T={arrays['temperature']:.2f})" if when == "after" else "")
        fig = reliability_grid([(title, arrays[f"bins_{when}"], report["test"][when])])
        paths.append(run.save_figure(fig, reliability_png(when)))
    run.write_logits(arrays)
    paths.append(run / LOGITS)
    return paths
