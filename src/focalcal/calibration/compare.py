"""Fit every post-hoc calibrator on a validation split, compare them on a test split, and choose one.

The choice is made on the validation split only, by a stated criterion: the mean NLL of 5-fold
cross-validation (fit on four fifths of the validation split, score the fifth), so that a calibrator that
merely memorises the validation split (isotonic regression, matrix scaling) does not win by it. The test
split is only reported: each calibration metric before and after each calibrator, with bootstrap 95%
intervals over test samples.

Matrix scaling and Dirichlet calibration have ``K^2`` parameters; by default they are fitted only up to
:data:`MAX_CLASSES_FOR_MATRIX` classes (ask for them explicitly above that).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError
from ..metrics import SUMMARY_KEYS, bootstrap_ci, calibration_summary, nll, reliability_bins
from .base import Calibrator
from .outputs import Outputs, check_fits_in_memory
from .registry import build_calibrator, calibrator_label

#: ``(registry name, options)`` of the calibrators compared by default.
DEFAULT_CALIBRATORS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("temperature", {"method": "nll"}),
    ("temperature", {"method": "ece_grid"}),
    ("vector", {}),
    ("matrix", {}),
    ("dirichlet", {}),
    ("histogram", {}),
    ("isotonic", {}),
)
MAX_CLASSES_FOR_MATRIX = 20
FOLDS = 5
#: Above this many test values (rows x classes) the test split is streamed in chunks and the bootstrap
#: intervals are skipped (they need the whole split in memory); the metrics themselves are still exact.
MAX_BOOTSTRAP_VALUES = 20_000_000


@dataclass
class Candidate:
    name: str
    options: dict[str, Any]

    @property
    def label(self) -> str:
        return calibrator_label(self.name, self.options)

    def build(self, n_bins: int, closed: str) -> Calibrator:
        opts = dict(self.options)
        if self.name in ("temperature",):
            opts.setdefault("n_bins", n_bins)
            opts.setdefault("closed", closed)
        if self.name == "histogram":
            opts.setdefault("n_bins", n_bins)
        return build_calibrator(self.name, **opts)


def default_candidates(num_classes: int) -> list[Candidate]:
    return [
        Candidate(n, dict(o))
        for n, o in DEFAULT_CALIBRATORS
        if n not in ("matrix", "dirichlet") or num_classes <= MAX_CLASSES_FOR_MATRIX
    ]


def cv_nll(
    candidate: Candidate,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    closed: str,
    folds: int = FOLDS,
    seed: int = 0,
) -> float:
    """Mean held-out NLL of ``folds``-fold cross-validation on the validation split (seeded folds)."""
    n = labels.shape[0]
    if n < 2 * folds:
        raise InputError(f"the validation split has {n} rows; cross-validating {folds} folds needs >= {2 * folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    total = 0.0
    for f in range(folds):
        held = order[f::folds]
        keep = torch.ones(n, dtype=torch.bool)
        keep[held] = False
        cal = candidate.build(n_bins, closed).fit(logits[keep], labels[keep])
        total += nll(logits=cal.transform(logits[held]), labels=labels[held]) * held.numel()
    return total / n


def _summary_with_ci(
    logits: torch.Tensor, labels: torch.Tensor, *, n_bins: int, closed: str, n_boot: int, seed: int
) -> dict[str, dict[str, float | None]]:
    point = calibration_summary(logits=logits, labels=labels, n_bins=n_bins, closed=closed)
    if n_boot <= 0 or logits.numel() > MAX_BOOTSTRAP_VALUES:
        return {k: {"estimate": v, "low": None, "high": None} for k, v in point.items()}
    ci = bootstrap_ci(
        "calibration_summary", logits=logits, labels=labels, n_bins=n_bins, closed=closed, n_boot=n_boot, seed=seed
    )
    return {k: {"estimate": point[k], "low": ci[k].low, "high": ci[k].high} for k in SUMMARY_KEYS}


def _streamed(test: Outputs, cal: Calibrator | None, *, n_bins: int, closed: str, chunk_values: int = 1 << 22):
    """Metrics (no intervals) and reliability bins of a test split too large to hold, chunk by chunk."""
    from ..metrics import CalibrationAccumulator

    acc = CalibrationAccumulator(n_bins, test.num_classes, closed=closed)
    rows = max(1, chunk_values // test.num_classes)
    for s in range(0, test.n, rows):
        z = test.as_logits(slice(s, s + rows))
        acc.update(logits=z if cal is None else cal.transform(z.double()), labels=test.labels[s : s + rows])
    summary = {k: {"estimate": v, "low": None, "high": None} for k, v in acc.compute().items()}
    return summary, acc.reliability_bins()


def compare(
    val: Outputs,
    test: Outputs,
    *,
    candidates: Sequence[Candidate] | None = None,
    n_bins: int = 15,
    closed: str = "left",
    n_boot: int = 1000,
    seed: int = 0,
    echo: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, cross-validate and compare; returns ``(report, arrays)``.

    ``report`` (JSON-able; fractions, NLL in nats): the criterion, each calibrator's label, options,
    validation CV NLL and test metrics with intervals, the uncalibrated test metrics, and ``chosen`` (the
    index of the lowest CV NLL). ``arrays``: the fitted calibrators and the reliability bins of the test split
    before and after the chosen one.
    """
    cands = list(candidates or default_candidates(val.num_classes))
    check_fits_in_memory(3 * val.n * val.num_classes, f"{val.source} (the validation split is fitted in memory)")
    zv, yv = val.as_logits().double(), val.labels
    stream = test.n * test.num_classes > MAX_BOOTSTRAP_VALUES
    zt = None if stream else test.as_logits()
    yt = test.labels

    def evaluate(cal: Calibrator | None):
        if stream:
            return _streamed(test, cal, n_bins=n_bins, closed=closed)
        z = zt if cal is None else cal.transform(zt.double())
        bins = reliability_bins(logits=z, labels=yt, n_bins=n_bins, closed=closed)
        return _summary_with_ci(z, yt, n_bins=n_bins, closed=closed, n_boot=n_boot, seed=seed), bins

    before, bins_before = evaluate(None)
    report: dict[str, Any] = {
        "criterion": f"lowest mean NLL of {FOLDS}-fold cross-validation on the validation split",
        "n_val": val.n,
        "n_test": test.n,
        "num_classes": val.num_classes,
        "kind": val.kind,
        "n_bins": n_bins,
        "bin_closed": closed,
        "n_boot": 0 if stream else n_boot,
        "units": "fractions (error, ece, adaptive_ece, classwise_ece, mce, brier); nll in nats",
        "uncalibrated": before,
        "calibrators": [],
    }
    fitted, bins = [], []
    for c in cands:
        echo(f"fitting {c.label}")
        score = cv_nll(c, zv, yv, n_bins=n_bins, closed=closed, seed=seed)
        cal = c.build(n_bins, closed).fit(zv, yv)
        metrics, b = evaluate(cal)
        fitted.append(cal)
        bins.append(b)
        report["calibrators"].append(
            {"name": c.name, "options": c.options, "label": c.label, "val_cv_nll": score, "test": metrics}
        )
    scores = [e["val_cv_nll"] for e in report["calibrators"]]
    best = min(range(len(scores)), key=lambda i: math.inf if math.isnan(scores[i]) else scores[i])
    report["chosen"] = best
    return report, {"calibrators": fitted, "bins_before": bins_before, "bins_after": bins[best]}


def _cell(m: dict[str, float | None], key: str) -> str:
    scale, digits = (1.0, 4) if key in ("nll", "brier") else (100.0, 2)
    v = f"{m['estimate'] * scale:.{digits}f}"
    if m["low"] is None:
        return v
    return f"{v} [{m['low'] * scale:.{digits}f}, {m['high'] * scale:.{digits}f}]"


def markdown(report: dict[str, Any], title: str = "Post-hoc calibration") -> str:
    keys = ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier")
    heads = ("Error %", "NLL", "ECE %", "AdaECE %", "Classwise-ECE %", "MCE %", "Brier")
    rows = [("uncalibrated", "", report["uncalibrated"])]
    for i, c in enumerate(report["calibrators"]):
        mark = " **(chosen)**" if i == report["chosen"] else ""
        rows.append((c["label"] + mark, f"{c['val_cv_nll']:.4f}", c["test"]))
    lines = [
        f"# {title}",
        "",
        f"- {report['n_val']:,} validation and {report['n_test']:,} test rows, {report['num_classes']} classes, "
        f"scores given as {report['kind']}; {report['n_bins']} equal-width bins "
        + ("[lo, hi)" if report["bin_closed"] == "left" else "(lo, hi]"),
        f"- every calibrator is fitted on the validation split; the one chosen has the {report['criterion']}",
        "- test metrics with bootstrap 95% intervals over test rows"
        + (f" ({report['n_boot']} resamples)" if report["n_boot"] else " (skipped: the test split is too large)"),
        "",
        "| calibrator | val CV NLL | " + " | ".join(heads) + " |",
        "|" + "---|" * (len(heads) + 2),
        *[f"| {name} | {cv} | " + " | ".join(_cell(m[k], k) for k in keys) + " |" for name, cv, m in rows],
        "",
        "![before](reliability_before.png) ![after](reliability_after.png)",
        "",
    ]
    return "\n".join(lines)


def apply_calibrator(cal: Calibrator, outputs: Outputs, *, chunk_rows: int = 1 << 16):
    """Calibrated probabilities of ``outputs`` (float32 numpy ``[N, K]``), computed chunk by chunk."""
    import numpy as np

    if cal.num_classes != outputs.num_classes:
        raise InputError(
            f"{outputs.source} has {outputs.num_classes} classes; the calibrator was fitted on {cal.num_classes}"
        )
    out = np.empty((outputs.n, outputs.num_classes), dtype=np.float32)
    for s in range(0, outputs.n, chunk_rows):
        z = outputs.as_logits(slice(s, s + chunk_rows)).double()
        out[s : s + chunk_rows] = torch.softmax(cal.transform(z), 1).float().numpy()
    return out
