"""The paper's tables from run folders: one cell per (dataset, model, loss), mean and 95% interval over seeds.

A cell's value is the mean over its runs (seeds) with a 95% Student-t interval
``mean +- t(0.975, n-1) * sd / sqrt(n)`` clipped to the quantity's range (errors and calibration errors
[0, 100] %, NLL and the temperature >= 0, AUROC [0, 100] %), and no interval below 3 runs
(:func:`focalcal.metrics.intervals.seed_interval`); a cell with one run shows that run's number exactly, with
a bootstrap 95% interval over test samples (:func:`focalcal.metrics.bootstrap_ci`, 1,000 resamples of the
saved test logits, seed 0) when the run folder has its ``logits.pt``. Every cell says how many runs it holds
and how its interval was made (:attr:`Cell.note`, printed under the tables and in the CSV).

Tables: test error, ECE, AdaECE, Classwise-ECE and NLL before and after temperature scaling, with the
temperature (the report's main method); and, when runs have ``ood.json``, the entropy AUROC of each OOD set
before and after temperature scaling. Errors and calibration errors are in %, NLL in nats.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine import RunFolder, TrainConfig
from ..engine.runfolder import CONFIG, OOD, REPORT
from ..errors import CheckpointError, ConfigError, InputError
from ..eval_settings import EvalSettings, run_settings
from ..evaluation.report import main_temperature
from ..losses import loss_identity, loss_label
from ..metrics import bootstrap_ci
from ..metrics.intervals import NONNEGATIVE, UNIT_RANGE, seed_interval
from ..models import model_label

#: (report key, column title, scale): errors and calibration errors in %, NLL in nats.
METRICS = (
    ("error", "Error", 100.0),
    ("ece", "ECE", 100.0),
    ("adaptive_ece", "AdaECE", 100.0),
    ("classwise_ece", "Classwise-ECE", 100.0),
    ("nll", "NLL", 1.0),
)
STAGES = ("before", "after")
N_BOOT = 1000


@dataclass(frozen=True)
class RunResult:
    """What the tables need from one run folder."""

    path: Path
    dataset: str
    model: str
    loss: str
    loss_options: dict[str, Any]
    seed: int
    report: dict[str, Any]
    ood: dict[str, Any] | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return loss_label(self.loss, self.loss_options)

    @property
    def temperature(self) -> float:
        return main_temperature(self.report)

    @property
    def settings(self) -> EvalSettings:
        """The bins, bin rule and temperature method the run was evaluated with (its ``report.json``; see
        :func:`~focalcal.eval_settings.run_settings`)."""
        return run_settings(report=self.report)


@dataclass
class Cell:
    """A table cell: ``value`` (mean, or the single run's number), interval ``[low, high]`` (None when there is
    none), ``n`` runs, ``how`` the interval was made: ``"t"`` (over seeds), ``"bootstrap"`` (one run) or
    ``"none"``, and ``note``, the interval's one-line description (e.g. ``"95% t-interval over 5 seeds, clipped
    to [0, 100]"``)."""

    value: float
    low: float | None
    high: float | None
    n: int
    how: str
    values: list[float] = field(default_factory=list)
    note: str = ""


def find_runs(patterns: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The evaluated run folders at or under the given paths or glob patterns, sorted, and the paths skipped
    (with why); see :meth:`focalcal.engine.RunFolder.find`."""
    runs, skipped = RunFolder.find(patterns, evaluated=True)
    return sorted(r.path for r in runs), skipped


def read_result(path: Path) -> RunResult:
    """Read one evaluated run folder.

    Raises:
        CheckpointError: its ``config.json``, ``report.json`` or ``ood.json`` is damaged or incomplete (the
            message names the file and how to make it again); :func:`build` skips such a run with a note.
    """
    run = RunFolder(path)
    config = run.read_config()
    try:
        TrainConfig.from_dict(config)
        seed = int(config.get("seed", 0))
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{run / CONFIG} is not a training configuration ({exc})") from None
    report = run.read_report()
    try:
        result = RunResult(
            path,
            report["dataset"],
            report["model"],
            report["loss"],
            dict(report.get("loss_options") or {}),
            seed,
            report,
            run.read_ood() if run.has_ood() else None,
            config,
        )
        float(result.temperature)
        result.settings  # noqa: B018 (checked here: an invalid n_bins or bin rule is a damaged report)
        for key, _, _ in METRICS:
            for stage in STAGES:
                float(report["test"][stage][key])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{run / REPORT} is damaged (missing or malformed entry: {exc}); evaluate the run again "
            f"(`focalcal evaluate {path}`)"
        ) from None
    if result.ood is not None and not isinstance(result.ood.get("sets"), dict):
        raise CheckpointError(f"{run / OOD} is damaged (no 'sets'); score the run again (`focalcal ood`)")
    return result


def _protocol_dict(r: RunResult) -> dict[str, Any]:
    return TrainConfig.from_dict(r.config).replace(seed=0).protocol_dict()


def _protocol(r: RunResult) -> str:
    """Everything that defines the experiment except the seed (runs that differ only in it share a cell), the
    loss as what it trains (:func:`~focalcal.losses.loss_identity`): ``--loss fl2``, ``--loss focal --loss-opt
    gamma=2`` and a run whose ``config.json`` holds ``"gamma": "2"`` are one experiment."""
    protocol = _protocol_dict(r)
    protocol["loss"] = loss_identity(protocol["loss"], protocol.pop("loss_options"))
    return json.dumps(protocol, sort_keys=True, default=str)


def group(results: Iterable[RunResult]) -> dict[tuple[str, str, str], list[RunResult]]:
    """Runs of the same experiment (same configuration up to the seed), keyed by (dataset, model, loss label)
    in first-seen order, seeds sorted. Experiments that share a label (e.g. the same loss trained for other
    epochs) get the configuration keys in which they differ appended: ``CE [epochs=10]``."""
    by_protocol: dict[str, list[RunResult]] = {}
    for r in results:
        by_protocol.setdefault(_protocol(r), []).append(r)
    groups = list(by_protocol.values())
    labels = [(rs[0].dataset, rs[0].model, rs[0].label) for rs in groups]
    out: dict[tuple[str, str, str], list[RunResult]] = {}
    for key, runs in zip(labels, groups):
        if labels.count(key) > 1:
            mine = _protocol_dict(runs[0])
            others = [_protocol_dict(g[0]) for k, g in zip(labels, groups) if k == key and g is not runs]
            diff = sorted({k for o in others for k in mine if o.get(k) != mine.get(k)})
            key = (key[0], key[1], f"{key[2]} [{', '.join(f'{k}={mine[k]}' for k in diff)}]")
        if key in out:  # cannot happen for distinct protocols; never merge two silently
            raise InputError(f"two experiments of {key[0]}/{key[1]} are both labelled {key[2]!r}")
        out[key] = sorted(runs, key=lambda r: r.seed)
    return out


def t_cell(values: Sequence[float], bounds: tuple[float, float] = UNIT_RANGE, scale: float = 100.0) -> Cell:
    """The mean of ``values`` (one per run) with its clipped t-interval (none below 3 runs); ``bounds`` is the
    quantity's range in its raw units, ``scale`` its display scale (100 for %)."""
    ci = seed_interval(values, bounds=bounds, scale=scale)
    return Cell(ci.mean, ci.low, ci.high, ci.n, ci.method, [float(v) for v in values], ci.note)


def _bootstrap(run: RunResult, key: str, stage: str) -> tuple[float, float, str] | None:
    folder = RunFolder(run.path)
    if not folder.has_logits():
        return None
    saved = folder.read_logits()
    logits = saved["test_logits"].double()
    if stage == "after":
        logits = logits / run.temperature
    metric = {
        "error": "error_rate",
        "ece": "ece",
        "adaptive_ece": "adaptive_ece",
        "classwise_ece": "classwise_ece",
        "nll": "nll",
    }[key]
    settings = run.settings
    kw = {"n_bins": settings.n_bins} if key in ("ece", "adaptive_ece", "classwise_ece") else {}
    if key in ("ece", "classwise_ece"):
        kw["closed"] = settings.bin_closed
    res = bootstrap_ci(metric, logits=logits, labels=saved["test_labels"], n_boot=N_BOOT, seed=0, **kw)
    return res.low, res.high, res.note


def metric_cell(runs: Sequence[RunResult], key: str, stage: str, *, bootstrap: bool = True) -> Cell:
    """The cell of ``key`` (a report metric) ``before``/``after`` TS over ``runs`` (raw units: fractions/nats)."""
    bounds, scale = (NONNEGATIVE, 1.0) if key == "nll" else (UNIT_RANGE, 100.0)
    cell = t_cell([r.report["test"][stage][key] for r in runs], bounds, scale)
    if cell.n == 1 and bootstrap:
        ci = _bootstrap(runs[0], key, stage)
        if ci is not None:
            cell.low, cell.high, cell.how, cell.note = ci[0], ci[1], "bootstrap", ci[2]
    return cell


def temperature_cell(runs: Sequence[RunResult]) -> Cell:
    return t_cell([r.temperature for r in runs], NONNEGATIVE, 1.0)


def auroc_cell(runs: Sequence[RunResult], ood_set: str, stage: str, score: str = "entropy") -> Cell | None:
    values = [
        r.ood["sets"][ood_set]["detection"][stage][score]["auroc"] for r in runs if r.ood and ood_set in r.ood["sets"]
    ]
    return t_cell(values) if values else None


@dataclass
class Tables:
    """The rows of the main and OOD tables, and the groups they came from."""

    groups: dict[tuple[str, str, str], list[RunResult]]
    main: list[dict[str, Any]]
    ood: list[dict[str, Any]]
    ood_sets: list[str]
    skipped: list[str]


def build(patterns: Sequence[str], *, bootstrap: bool = True) -> Tables:
    """Read the evaluated runs at or under ``patterns`` and compute every cell. A run with a damaged
    ``config.json``, ``report.json`` or ``ood.json``, or an unfinished one, is left out with one line in
    ``Tables.skipped`` naming it; the others go on.

    Raises:
        InputError: no evaluated run is left (the message lists what was skipped).
    """
    paths, skipped = find_runs(patterns)
    results = []
    for p in paths:
        try:
            r = read_result(p)
        except CheckpointError as exc:  # one damaged run never stops the others; the message names the file
            skipped.append(str(exc))
            continue
        done, planned = r.report.get("epochs_trained"), r.report.get("epochs", r.config.get("epochs"))
        if done is not None and planned is not None and done < planned:
            skipped.append(f"{p}: evaluated after {done} of {planned} epochs (an unfinished run)")
            continue
        results.append(r)
    if not results:
        raise InputError(
            "no evaluated runs found under " + ", ".join(patterns) + ("; " + "; ".join(skipped) if skipped else "")
        )
    groups = group(results)
    main, ood = [], []
    ood_sets: list[str] = []
    for (dataset, model, label), runs in groups.items():
        row: dict[str, Any] = {
            "dataset": dataset,
            "model": model,
            "loss": label,
            "n": len(runs),
            "seeds": [r.seed for r in runs],
            "ts_method": runs[0].report["ts_method"],
        }
        for key, _, _ in METRICS:
            for stage in STAGES:
                row[f"{key}_{stage}"] = metric_cell(runs, key, stage, bootstrap=bootstrap)
        row["temperature"] = temperature_cell(runs)
        main.append(row)
        sets = list(dict.fromkeys(s for r in runs if r.ood for s in r.ood["sets"]))
        ood_sets += [s for s in sets if s not in ood_sets]
        if sets:
            orow: dict[str, Any] = {
                "dataset": dataset,
                "model": model,
                "loss": label,
                "n": sum(1 for r in runs if r.ood),
            }
            for s in sets:
                for stage in STAGES:
                    orow[f"{s}_{stage}"] = auroc_cell(runs, s, stage)
            ood.append(orow)
    return Tables(groups, main, ood, ood_sets, skipped)


# -- rendering ---------------------------------------------------------------------------------------------
def _fmt(cell: Cell | None, scale: float, digits: int) -> str:
    if cell is None:
        return "-"
    v = f"{cell.value * scale:.{digits}f}"
    if cell.low is None:
        return v
    mark = "*" if cell.how == "bootstrap" else ""
    return f"{v} [{cell.low * scale:.{digits}f}, {cell.high * scale:.{digits}f}]{mark}"


def _columns() -> list[tuple[str, str, float, int]]:
    cols = []
    for key, title, scale in METRICS:
        digits = 3 if key == "nll" else 2
        cols += [(f"{key}_before", title + (" %" if scale == 100 else ""), scale, digits)]
        if key != "error":  # the error does not change with the temperature
            cols += [(f"{key}_after", f"{title}{' %' if scale == 100 else ''} (T)", scale, digits)]
    return cols + [("temperature", "T", 1.0, 2)]


def main_rows_text(tables: Tables) -> tuple[list[str], list[list[str]]]:
    cols = _columns()
    head = ["Dataset", "Model", "Loss", "n"] + [c[1] for c in cols]
    rows = [
        [r["dataset"], model_label(r["model"]), r["loss"], str(r["n"])] + [_fmt(r[k], s, d) for k, _, s, d in cols]
        for r in tables.main
    ]
    return head, rows


def ood_rows_text(tables: Tables) -> tuple[list[str], list[list[str]]]:
    head = ["Dataset", "Model", "Loss", "n"] + [
        f"{s} AUROC %{' (T)' if st == 'after' else ''}" for s in tables.ood_sets for st in STAGES
    ]
    rows = [
        [r["dataset"], model_label(r["model"]), r["loss"], str(r["n"])]
        + [_fmt(r.get(f"{s}_{st}"), 100.0, 2) for s in tables.ood_sets for st in STAGES]
        for r in tables.ood
    ]
    return head, rows


NOTE = (
    "Mean over the n runs (seeds) with its interval in brackets (none below 3 runs); for n = 1 the run's own "
    "number, with a bootstrap interval over test samples (marked *) when its test logits were saved. Error and "
    "calibration errors in %, NLL in nats; (T): after temperature scaling fitted on the validation split; T: the "
    "temperature."
)


def interval_notes(tables: Tables) -> list[str]:
    """How the intervals of the tables were made: each distinct :attr:`Cell.note`, once, in table order (the
    bootstrap ones marked ``*`` as in the cells)."""
    notes: dict[str, None] = {}
    for row in (*tables.main, *tables.ood):
        for cell in row.values():
            if isinstance(cell, Cell) and cell.note:
                notes[("* " if cell.how == "bootstrap" else "") + cell.note] = None
    return list(notes)


def note_text(tables: Tables) -> str:
    """:data:`NOTE` with the interval methods of these tables."""
    notes = interval_notes(tables)
    return NOTE + (" Intervals: " + "; ".join(notes) + "." if notes else "")


def markdown(tables: Tables) -> str:
    def md(head, rows):
        return "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
        )

    parts = [
        "## Classification and calibration (test split)",
        "",
        md(*main_rows_text(tables)),
        "",
        note_text(tables),
        "",
    ]
    if tables.ood:
        parts += ["## OOD detection: AUROC of the softmax entropy (OOD = positive)", "", md(*ood_rows_text(tables)), ""]
    return "\n".join(parts)


def _tex(s: str) -> str:
    return s.replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def latex(tables: Tables) -> str:
    out = []
    for head, rows in (main_rows_text(tables), ood_rows_text(tables) if tables.ood else (None, None)):
        if head is None:
            continue
        out += [
            r"\begin{tabular}{" + "l" * 3 + "r" * (len(head) - 3) + "}",
            r"\toprule",
            " & ".join(_tex(h) for h in head) + r" \\",
            r"\midrule",
        ]
        out += [" & ".join(_tex(c) for c in r) + r" \\" for r in rows]
        out += [r"\bottomrule", r"\end{tabular}", ""]
    out += [r"\par\smallskip{\footnotesize " + _tex(note_text(tables)) + "}", ""]
    return "\n".join(out)


def csv_rows(tables: Tables) -> list[dict[str, Any]]:
    """One row per cell with full precision: the group, metric, stage, value, interval, n and method."""

    def row(r: dict[str, Any], table: str, metric: str, stage: str, cell: Cell, seeds: str) -> dict[str, Any]:
        return {
            "dataset": r["dataset"],
            "model": r["model"],
            "loss": r["loss"],
            "table": table,
            "metric": metric,
            "stage": stage,
            "value": cell.value,
            "low": cell.low,
            "high": cell.high,
            "n": cell.n,
            "interval": cell.how,
            "interval_method": cell.note,
            "seeds": seeds,
        }

    rows = []
    for r in tables.main:
        for key, cell in r.items():
            if isinstance(cell, Cell):
                metric, _, stage = key.rpartition("_") if key != "temperature" else ("temperature", "", "")
                rows.append(row(r, "main", metric, stage, cell, " ".join(map(str, r["seeds"]))))
    for r in tables.ood:
        for s in tables.ood_sets:
            for st in STAGES:
                cell = r.get(f"{s}_{st}")
                if cell is not None:
                    rows.append(row(r, "ood", f"auroc_entropy:{s}", st, cell, ""))
    return rows


# -- figures ---------------------------------------------------------------------------------------------
def _point(cell: Cell, scale: float) -> tuple[float, float | None, float | None]:
    return (
        cell.value * scale,
        None if cell.low is None else cell.low * scale,
        None if cell.high is None else cell.high * scale,
    )


def fig6(tables: Tables):
    """Error bars of ECE, AdaECE and Classwise-ECE per loss, before and after TS, one row per (dataset, model)."""
    from ..plots import error_bar_figure

    panels = []
    by_model: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in tables.main:
        by_model.setdefault((r["dataset"], r["model"]), []).append(r)
    for (dataset, model), rows in by_model.items():
        losses = [r["loss"] for r in rows]
        for key, title, scale in METRICS[1:4]:
            series = {
                "before TS": [_point(r[f"{key}_before"], scale) for r in rows],
                "after TS": [_point(r[f"{key}_after"], scale) for r in rows],
            }
            panels.append((f"{dataset}, {model_label(model)}: {title} %", losses, series))
    return error_bar_figure(panels, suptitle="Calibration errors with 95% intervals (Fig. 6)")


#: The file name of Fig. 7 for one OOD set, as ``focalcal table`` and ``focalcal claims`` write it.
FIG7_PNG = "fig7_roc_{ood_set}.png"


def fig7_name(ood_set: str) -> str:
    """:data:`FIG7_PNG` for ``ood_set``, its ``:`` written as ``-`` (``cifar10c:gaussian_noise:5`` ->
    ``fig7_roc_cifar10c-gaussian_noise-5.png``)."""
    return FIG7_PNG.format(ood_set=ood_set.replace(":", "-"))


def fig7(tables: Tables, ood_set: str, score: str = "entropy"):
    """ROC curves (softmax entropy) of the first seed of every group on ``ood_set``, before and after TS."""
    from ..plots import roc_comparison_figure

    curves = []
    for (_, model, label), runs in tables.groups.items():
        r = next((r for r in runs if r.ood and ood_set in r.ood["sets"] and "roc" in r.ood["sets"][ood_set]), None)
        if r is None:
            continue
        roc = r.ood["sets"][ood_set]["roc"][score]
        curves.append(
            (f"{label} ({model_label(model)}, seed {r.seed})", {st: (roc[st]["fpr"], roc[st]["tpr"]) for st in STAGES})
        )
    if not curves:
        raise InputError(f"no run has ROC curves for {ood_set!r} (score the runs with `focalcal ood`)")
    return roc_comparison_figure(curves, suptitle=f"ROC, {score} score: test split vs {ood_set} (Fig. 7)")
