"""Read run folders (``config.json``, ``log.jsonl``, ``report.json``, ``logits.pt``) into arrays and tables.

This is the data side of the paper's analysis figures (Figs. 1-5): it reads what training and evaluation
logged and never runs a model. Drawing is :mod:`focalcal.plots`, from the numbers :func:`curves_of` (the
dynamics figures) and :func:`reliability_panels` (the reliability diagrams) give; writing the figures is
:mod:`focalcal.cli.plot`, :mod:`focalcal.experiments.claims` and :mod:`focalcal.experiments.demo`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.runfolder import CONFIG, LOG, LOGITS, REPORT, RunFolder
from ..errors import CheckpointError, InputError
from ..eval_settings import resolve_settings, run_settings
from ..losses import loss_label
from ..plots.dynamics import Curves
from .report import main_temperature

# per-epoch statistics of Fig. 2, on the un-augmented train subset (``train_eval_``) and the test split
_DYN_STATS = (
    "nll",
    "nll_correct",
    "nll_incorrect",
    "entropy",
    "entropy_correct",
    "entropy_incorrect",
    "accuracy",
    "n_correct",
    "n_incorrect",
)
DYNAMICS_COLUMNS: tuple[str, ...] = tuple(f"{s}_{k}" for s in ("train_eval", "test") for k in _DYN_STATS)
TEST_NLL_COLUMNS: tuple[str, ...] = ("test_nll", "test_accuracy", "val_nll")
WEIGHT_NORM_COLUMNS: tuple[str, ...] = ("fc_weight_norm", "train_acc")


@dataclass(frozen=True)
class RunLog:
    """One run folder's configuration and per-epoch log.

    Attributes:
        path: the run folder.
        label: legend label (from the loss and its options unless given).
        config: ``config.json`` as a dict.
        records: the ``log.jsonl`` lines, in epoch order.
    """

    path: Path
    label: str
    config: Mapping[str, Any]
    records: tuple[Mapping[str, Any], ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def epochs(self) -> np.ndarray:
        """``[E]`` int64: the 1-based epoch of each record (the model after that many epochs)."""
        return np.array([int(r["epoch"]) for r in self.records], dtype=np.int64)

    def has(self, key: str) -> bool:
        """Whether any epoch logged a non-null ``key``."""
        return any(r.get(key) is not None for r in self.records)

    def column(self, key: str) -> np.ndarray:
        """``[E]`` float64 of ``key`` per epoch; NaN where the key is absent or null (e.g.
        ``test_nll_incorrect`` once every test sample is classified correctly)."""
        values = [np.nan if r.get(key) is None else float(r[key]) for r in self.records]
        return np.array(values, dtype=np.float64)

    def lr_drops(self) -> list[int]:
        """Epochs after which the learning rate decreased (epoch ``e`` was the last one at the old lr)."""
        lrs = [(int(r["epoch"]), r.get("lr")) for r in self.records]
        return [e for (e, a), (_, b) in zip(lrs, lrs[1:]) if a is not None and b is not None and b < a]


def read_run(run_dir: str | Path, *, label: str | None = None) -> RunLog:
    """Read ``config.json`` and ``log.jsonl`` from ``run_dir``.

    Raises:
        FileNotFoundError: no ``log.jsonl`` or ``config.json`` (the message says how to make a run).
        CheckpointError: a damaged ``config.json`` or log line (named), or an empty log.
    """
    run = RunFolder(run_dir)
    for f in (CONFIG, LOG):
        if not (run / f).is_file():
            raise FileNotFoundError(
                f"{run.path} holds no training log ({f} missing); train a run with `focalcal train --out DIR` first"
            )
    config = run.read_config()
    records = run.read_log()
    if not records:
        raise CheckpointError(f"{run / LOG} is empty: the run has not finished an epoch yet")
    if label is None:
        label = loss_label(config.get("loss", "?"), config.get("loss_options"))
    return RunLog(run.path, label, config, tuple(records))


def read_runs(
    run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, *, skipped: list[str] | None = None
) -> list[RunLog]:
    """Read several runs; labels shared by more than one run get the folder name appended.

    ``skipped``: when given, a run that cannot be read (no log, a damaged ``config.json`` or log) is left
    out and one line naming it and why is appended to this list, instead of raising; at least one run must
    remain.

    Raises:
        InputError: ``labels`` given with a different length than ``run_dirs``, or no runs (left).
        FileNotFoundError / ValueError: as :func:`read_run` (without ``skipped``).
    """
    if not run_dirs:
        raise InputError("no run folders given")
    if labels is not None and len(labels) != len(run_dirs):
        raise InputError(f"got {len(labels)} labels for {len(run_dirs)} runs; give one --label per run")
    runs = []
    for i, d in enumerate(run_dirs):
        try:
            runs.append(read_run(d, label=None if labels is None else labels[i]))
        except (FileNotFoundError, CheckpointError) as exc:
            if skipped is None:
                raise
            skipped.append(str(exc))  # the message names the run folder or file
    if not runs:
        raise InputError("no readable run: " + "; ".join(skipped or []))
    if labels is None:
        seen = [r.label for r in runs]
        runs = [
            RunLog(r.path, f"{r.label} [{r.name}]", r.config, r.records) if seen.count(r.label) > 1 else r for r in runs
        ]
    return runs


def require_columns(runs: Iterable[RunLog], keys: Sequence[str], why: str) -> None:
    """Raise ``InputError`` naming the run and the key when a run never logged one of ``keys``."""
    for run in runs:
        missing = [k for k in keys if not run.has(k)]
        if missing:
            raise InputError(f"run {run.path} has no {', '.join(missing)} in its {LOG} ({why})")


def curves_of(runs: Iterable[RunLog], columns: Sequence[str] | None = None) -> list[Curves]:
    """The numbers the dynamics figures draw (:mod:`focalcal.plots.dynamics`), one :class:`Curves` per run: its
    label, epochs, lr drops and the ``[E]`` float64 column of each key (NaN where not logged).

    ``columns``: the log keys to take; ``None``: every key any epoch logged a number (or null) for.
    """
    out = []
    for run in runs:
        keys = columns
        if keys is None:
            keys = sorted(
                {
                    k
                    for rec in run.records
                    for k, v in rec.items()
                    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                }
            )
        out.append(Curves(run.label, run.epochs, {k: run.column(k) for k in keys}, tuple(run.lr_drops())))
    return out


def epoch_rows(runs: Iterable[RunLog], columns: Sequence[str]) -> list[dict[str, Any]]:
    """A tidy table: one row per run per epoch with ``run, label, loss, gamma, epoch, lr`` and ``columns``.

    Values are the log's own numbers (``None`` where not logged); ``gamma`` is the logged fixed gamma, if any.
    """
    rows = []
    for run in runs:
        for rec in run.records:
            row = {
                "run": str(run.path),
                "label": run.label,
                "loss": run.config.get("loss"),
                "gamma": rec.get("gamma"),
                "epoch": int(rec["epoch"]),
                "lr": rec.get("lr"),
            }
            row.update({k: rec.get(k) for k in columns})
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Reliability:
    """A run's saved test-split evaluation binned for reliability diagrams (Fig. 1).

    Attributes:
        label: legend label of the run.
        temperature: the temperature of the report's main method (``report["ts_method"]``).
        ts_method: that method's name.
        before, after: ``BinStats`` of the test logits and of the test logits divided by ``temperature``.
        metrics_before, metrics_after: ``calibration_summary`` of the same (fractions; nll in nats).
    """

    run: Path
    label: str
    temperature: float
    ts_method: str
    before: Any
    after: Any
    metrics_before: Mapping[str, float]
    metrics_after: Mapping[str, float]


def read_reliability(run: RunLog | str | Path, *, n_bins: int | None = None) -> Reliability:
    """Bin a run's saved test logits (``logits.pt``) before and after its temperature (``report.json``).

    Args:
        run: a :class:`RunLog` (its label is kept) or a run folder.
        n_bins: equal-width bins; default the report's ``n_bins`` (bin rule: the report's ``bin_closed``).

    Raises:
        InputError: ``n_bins`` is not a whole number >= 1.
        FileNotFoundError: no ``logits.pt`` / ``report.json`` (run ``focalcal evaluate RUN`` first).
        CheckpointError: a damaged ``report.json`` or ``logits.pt`` (named), or a temperature that is not positive.
    """
    if not isinstance(run, RunLog):
        run = read_run(run)
    folder = RunFolder(run.path)
    if not (folder.has_report() and folder.has_logits()):
        raise FileNotFoundError(
            f"{run.path} has no {REPORT} / {LOGITS}; evaluate the run with "
            f"`focalcal evaluate {run.path}` first (the plot reads its saved logits)"
        )
    report = folder.read_report()
    saved = folder.read_logits()
    try:
        method = report["ts_method"]
        t = main_temperature(report)
        stored = run_settings(report=report)  # the report's bins and bin rule (older reports: the defaults)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{run.path / REPORT} is damaged (missing or malformed entry: {exc}); evaluate the run again "
            f"(`focalcal evaluate {run.path}`)"
        ) from None
    if not (math.isfinite(t) and t > 0):
        raise CheckpointError(f"{run.path / REPORT}: temperature {t} of method {method!r} is not positive")
    settings = resolve_settings(stored, n_bins=n_bins)
    logits, labels = saved["test_logits"].float(), saved["test_labels"]
    metrics_before, before = settings.summary_and_bins(logits, labels)  # one pass per stage
    metrics_after, after = settings.summary_and_bins(logits / t, labels)
    return Reliability(run.path, run.label, t, method, before, after, metrics_before, metrics_after)


def reliability_rows(items: Iterable[Reliability]) -> list[dict[str, Any]]:
    """A tidy table: one row per run, stage (``before``/``after`` TS) and bin, with the bin's numbers."""
    rows = []
    for it in items:
        for stage, b, t in (("before", it.before, 1.0), ("after", it.after, it.temperature)):
            edges = np.asarray(b.edges, dtype=float)
            for i in range(len(edges) - 1):
                rows.append(
                    {
                        "run": str(it.run),
                        "label": it.label,
                        "stage": stage,
                        "temperature": t,
                        "bin": i,
                        "bin_lower": float(edges[i]),
                        "bin_upper": float(edges[i + 1]),
                        "count": int(b.counts[i]),
                        "mean_confidence": float(b.mean_confidence[i]),
                        "accuracy": float(b.accuracy[i]),
                    }
                )
    return rows


def reliability_panels(items: Iterable[Reliability]) -> list[tuple[str, Any, Mapping[str, float]]]:
    """The panels of :func:`focalcal.plots.reliability_grid`, two per run: ``("<label>: before TS", BinStats,
    metrics)`` and ``("<label>: after TS (T=<temperature>)", BinStats, metrics)``."""
    panels = []
    for it in items:
        panels.append((f"{it.label}: before TS", it.before, it.metrics_before))
        panels.append((f"{it.label}: after TS (T={it.temperature:.2f})", it.after, it.metrics_after))
    return panels
