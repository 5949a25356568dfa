"""Fit every post-hoc calibrator on a validation split, compare them on a test split, and choose one.

The choice is made on the validation split only, by a stated rule that respects noise: each calibrator's
NLL is cross-validated over 5 folds (fit on four fifths of the validation split, score the fifth), so that
a calibrator that merely memorises the validation split (isotonic regression, matrix scaling) does not win
by it; then the *one-standard-error rule* (Hastie, Tibshirani & Friedman, The Elements of Statistical
Learning, Sec. 7.10) picks the simplest calibrator (fewest fitted parameters) whose mean CV NLL is within one
standard error (over the folds) of the lowest mean. A difference smaller than the folds' noise does not buy
110 parameters over 1. The test split is only reported: each calibration metric before and after each
calibrator, with bootstrap 95% intervals over test samples (:func:`focalcal.metrics.bootstrap_ci`).

Matrix scaling and Dirichlet calibration have ``K^2`` parameters; by default they are fitted only up to
:data:`MAX_CLASSES_FOR_MATRIX` classes (ask for them explicitly above that). Likewise a default calibrator
whose fits are estimated (:meth:`Calibrator.fit_seconds`) to take longer than :data:`MAX_DEFAULT_FIT_SECONDS`
for the input's size is skipped with a note (isotonic regression on 100,000 classes makes 600,000 fits);
naming it fits it anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..defaults import BIN_CLOSED, N_BINS
from ..errors import InputError
from ..metrics import SUMMARY_KEYS, bootstrap_ci, calibration_summary, nll, reliability_bins
from ..metrics.intervals import bootstrap_note
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
#: The rule that chooses the calibrator, as reports state it.
CRITERION = (
    f"one-standard-error rule on the NLL of {FOLDS}-fold cross-validation on the validation split: the simplest "
    "calibrator (fewest fitted parameters) whose mean CV NLL is within one standard error (over the folds) of the "
    "lowest mean"
)
#: A default calibrator is skipped when its fits (on the validation split and on each cross-validation fold) are
#: estimated to take longer than this many seconds of one CPU core; named explicitly, it is fitted anyway.
MAX_DEFAULT_FIT_SECONDS = 300.0
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


def cv_nll_folds(
    candidate: Candidate,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    n_bins: int,
    closed: str,
    folds: int = FOLDS,
    seed: int = 0,
) -> tuple[list[float], list[int]]:
    """Held-out NLL (nats, mean over the fold's rows) of each of ``folds`` seeded folds of the validation split
    ``logits [N, K]`` / ``labels [N]``, and the folds' sizes.

    Raises:
        InputError: fewer than ``2 * folds`` rows.
    """
    n = labels.shape[0]
    if n < 2 * folds:
        raise InputError(f"the validation split has {n} rows; cross-validating {folds} folds needs >= {2 * folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    scores, sizes = [], []
    for f in range(folds):
        held = order[f::folds]
        keep = torch.ones(n, dtype=torch.bool)
        keep[held] = False
        cal = candidate.build(n_bins, closed).fit(logits[keep], labels[keep])
        scores.append(nll(logits=cal.transform(logits[held]), labels=labels[held]))
        sizes.append(int(held.numel()))
    return scores, sizes


def cv_seconds(
    candidate: Candidate, n_rows: int, n_classes: int, *, n_bins: int = N_BINS, closed: str = BIN_CLOSED
) -> float:
    """Estimated seconds of one CPU core to fit ``candidate`` on the validation split and on each of the
    :data:`FOLDS` cross-validation folds (four fifths of the rows each) of ``n_rows x n_classes`` logits."""
    cal = candidate.build(n_bins, closed)
    fold_rows = n_rows - n_rows // FOLDS
    return cal.fit_seconds(n_rows, n_classes) + FOLDS * cal.fit_seconds(fold_rows, n_classes)


def affordable(
    candidates: Sequence[Candidate],
    n_rows: int,
    n_classes: int,
    *,
    n_bins: int = N_BINS,
    closed: str = BIN_CLOSED,
    limit: float | None = None,
) -> tuple[list[Candidate], list[tuple[Candidate, float]]]:
    """Split ``candidates`` into those whose fits are estimated (:func:`cv_seconds`) within ``limit`` seconds
    (default :data:`MAX_DEFAULT_FIT_SECONDS`) and the others, each with its estimate. The first candidate is
    always kept, so there is one to choose (among the defaults: temperature scaling by NLL, one parameter).

    Returns:
        ``(kept, skipped)``: kept candidates in their order; ``[(candidate, estimated seconds), ...]``.
    """
    limit = MAX_DEFAULT_FIT_SECONDS if limit is None else limit
    cost = [cv_seconds(c, n_rows, n_classes, n_bins=n_bins, closed=closed) for c in candidates]
    kept = [c for i, c in enumerate(candidates) if cost[i] <= limit or i == 0]
    skipped = [(c, cost[i]) for i, c in enumerate(candidates) if cost[i] > limit and i != 0]
    return kept, skipped


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def skipped_note(skipped: Sequence[tuple[Candidate, float]], n_rows: int, n_classes: int) -> str:
    """One line: which calibrators were skipped, why, and how to fit them anyway."""
    names = ",".join(c.name + (f":{c.options['method']}" if "method" in c.options else "") for c, _ in skipped)
    each = ", ".join(f"{c.label} (about {_duration(s)})" for c, s in skipped)
    return (
        f"skipped {each}: fitting them on {n_rows:,} rows x {n_classes:,} classes (and on {FOLDS} "
        f"cross-validation folds) is estimated to take longer than {_duration(MAX_DEFAULT_FIT_SECONDS)} of one CPU "
        f"core each; name them to fit them anyway (--calibrators {names})"
    )


def cv_nll(candidate: Candidate, logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> float:
    """Mean held-out NLL of ``folds``-fold cross-validation on the validation split (seeded folds; the mean over
    all rows, each scored by the calibrator fitted without its fold). Keyword arguments (``n_bins``, ``closed``,
    ``folds``, ``seed``) and errors as :func:`cv_nll_folds`."""
    return _pooled_mean(*cv_nll_folds(candidate, logits, labels, **options))


def _pooled_mean(fold_scores: Sequence[float], fold_sizes: Sequence[int]) -> float:
    """The mean over all rows of per-fold means ``fold_scores`` of folds of ``fold_sizes`` rows."""
    return sum(s * m for s, m in zip(fold_scores, fold_sizes)) / sum(fold_sizes)


def fold_standard_error(fold_scores: Sequence[float]) -> float:
    """Standard error of the mean over folds: ``sd(fold scores, ddof=1) / sqrt(folds)`` (NaN below 2 folds)."""
    k = len(fold_scores)
    if k < 2:
        return math.nan
    mean = sum(fold_scores) / k
    return math.sqrt(sum((s - mean) ** 2 for s in fold_scores) / (k - 1) / k)


def one_se_choice(
    means: Sequence[float], standard_errors: Sequence[float], n_parameters: Sequence[int | None]
) -> dict[str, Any]:
    """The one-standard-error rule: among the calibrators whose mean CV NLL is at most ``best + se(best)``
    (best: the lowest mean), the one with the fewest parameters (then the lower mean, then the first).

    A NaN mean is never chosen; a calibrator of unknown size (None) only when no calibrator of known size is
    within the threshold.

    Returns:
        ``{"chosen", "best"}`` (indices) and ``"best_cv_nll"``, ``"se"`` (the best's standard error over folds),
        ``"threshold"`` (``best_cv_nll + se``) and ``"margin"`` (``threshold`` minus the chosen one's mean: how far
        inside the threshold it lies), in nats.

    Raises:
        InputError: no calibrator has a finite mean CV NLL.
    """
    finite = [i for i, m in enumerate(means) if math.isfinite(m)]
    if not finite:
        raise InputError("no calibrator has a finite cross-validated NLL; check the validation outputs")
    best = min(finite, key=lambda i: means[i])
    se = standard_errors[best]
    threshold = means[best] + (se if math.isfinite(se) else 0.0)
    eligible = [i for i in finite if means[i] <= threshold]

    def size(i: int) -> float:
        return math.inf if n_parameters[i] is None else float(n_parameters[i])

    chosen = min(eligible, key=lambda i: (size(i), means[i], i))
    return {
        "chosen": chosen,
        "best": best,
        "best_cv_nll": means[best],
        "se": se,
        "threshold": threshold,
        "margin": threshold - means[chosen],
    }


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
    n_bins: int = N_BINS,
    closed: str = BIN_CLOSED,
    n_boot: int = 1000,
    seed: int = 0,
    choose: str | None = None,
    echo: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit, cross-validate and compare; returns ``(report, arrays)``.

    ``report`` (JSON-able; fractions, NLL in nats): the criterion (:data:`CRITERION`), each calibrator's label,
    options, number of parameters, validation CV NLL (mean, standard error over the folds, and each fold's) and
    test metrics with intervals (``interval``: how they were made), the uncalibrated test metrics, ``rule``
    (:func:`one_se_choice`'s numbers, and ``forced``) and ``chosen``: the index the one-standard-error rule picks,
    or, with ``choose``, the candidate named so (a registry name as ``focalcal calibrate --calibrators`` takes
    it: ``temperature``, ``temperature:ece_grid``, ``dirichlet``, ... or a label). ``arrays``: the fitted
    calibrators and the reliability bins of the test split before and after the chosen one.

    Raises:
        InputError: ``choose`` names none of the candidates (the message lists them); see :func:`cv_nll_folds`.
    """
    skipped: list[tuple[Candidate, float]] = []
    if candidates:
        cands = list(candidates)  # named: fitted whatever they cost
    else:
        cands, skipped = affordable(
            default_candidates(val.num_classes), val.n, val.num_classes, n_bins=n_bins, closed=closed
        )
        if skipped:
            echo(f"note: {skipped_note(skipped, val.n, val.num_classes)}")
    forced = None if choose is None else _find_candidate(cands, choose)
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
        "criterion": CRITERION,
        "n_val": val.n,
        "n_test": test.n,
        "num_classes": val.num_classes,
        "kind": val.kind,
        "n_bins": n_bins,
        "bin_closed": closed,
        "n_boot": 0 if stream else n_boot,
        "interval": (
            "no intervals: the test split is too large to hold for the bootstrap"
            if stream
            else (bootstrap_note(n_boot) if n_boot > 0 else "no intervals: 0 bootstrap resamples asked for")
        ),
        "units": "fractions (error, ece, adaptive_ece, classwise_ece, mce, brier); nll in nats",
        "uncalibrated": before,
        "calibrators": [],
        "skipped": [
            {"name": c.name, "options": c.options, "label": c.label, "estimated_seconds": round(s, 1)}
            for c, s in skipped
        ],
    }
    fitted, bins = [], []
    for c in cands:
        echo(f"fitting {c.label}")
        folds, sizes = cv_nll_folds(c, zv, yv, n_bins=n_bins, closed=closed, seed=seed)
        cal = c.build(n_bins, closed).fit(zv, yv)
        metrics, b = evaluate(cal)
        fitted.append(cal)
        bins.append(b)
        report["calibrators"].append(
            {
                "name": c.name,
                "options": c.options,
                "label": c.label,
                "n_parameters": cal.n_parameters,
                "val_cv_nll": _pooled_mean(folds, sizes),
                "val_cv_nll_se": fold_standard_error(folds),
                "val_cv_nll_folds": folds,
                "test": metrics,
            }
        )
    entries = report["calibrators"]
    rule = one_se_choice(
        [e["val_cv_nll"] for e in entries], [e["val_cv_nll_se"] for e in entries], [e["n_parameters"] for e in entries]
    )
    rule["forced"] = forced is not None
    chosen = rule["chosen"] if forced is None else forced
    report["rule"] = rule
    report["chosen"] = chosen
    return report, {"calibrators": fitted, "bins_before": bins_before, "bins_after": bins[chosen]}


def _find_candidate(cands: Sequence[Candidate], choose: str) -> int:
    """Index of the candidate ``choose`` names: ``name``, ``name:method`` or its label (case-insensitive)."""
    want = choose.strip().lower()
    name, _, method = want.partition(":")
    for i, c in enumerate(cands):
        if want == c.label.lower():
            return i
        default = "nll" if c.name == "temperature" else ""
        if name == c.name and (method or default) == c.options.get("method", default):
            return i
    known = ", ".join(f"{c.name}{':' + c.options['method'] if 'method' in c.options else ''}" for c in cands)
    raise InputError(f"--choose {choose!r} is not among the calibrators compared; choose one of: {known}")


def rule_text(report: dict[str, Any]) -> str:
    """One line: the rule, the numbers it used and the margin of the choice (nats)."""
    rule, cals = report["rule"], report["calibrators"]
    best, chosen = cals[rule["best"]], cals[report["chosen"]]
    size = "unknown size" if chosen["n_parameters"] is None else f"{chosen['n_parameters']} parameters"
    text = (
        f"lowest mean CV NLL {rule['best_cv_nll']:.4f} ({best['label']}) + 1 SE {rule['se']:.4f} = threshold "
        f"{rule['threshold']:.4f}; "
    )
    if rule["forced"]:
        return text + f"{chosen['label']} forced by --choose (CV NLL {chosen['val_cv_nll']:.4f}, {size})"
    return text + (
        f"chosen: {chosen['label']}, the simplest within it ({size}, CV NLL {chosen['val_cv_nll']:.4f}, "
        f"{rule['margin']:.4f} below the threshold)"
    )


def _cell(m: dict[str, float | None], key: str) -> str:
    scale, digits = (1.0, 4) if key in ("nll", "brier") else (100.0, 2)
    v = f"{m['estimate'] * scale:.{digits}f}"
    if m["low"] is None:
        return v
    return f"{v} [{m['low'] * scale:.{digits}f}, {m['high'] * scale:.{digits}f}]"


def markdown(report: dict[str, Any], title: str = "Post-hoc calibration") -> str:
    keys = ("error", "nll", "ece", "adaptive_ece", "classwise_ece", "mce", "brier")
    heads = ("Error %", "NLL", "ECE %", "AdaECE %", "Classwise-ECE %", "MCE %", "Brier")
    rows = [("uncalibrated", "", "", report["uncalibrated"])]
    for i, c in enumerate(report["calibrators"]):
        mark = " **(chosen)**" if i == report["chosen"] else ""
        size = "?" if c["n_parameters"] is None else str(c["n_parameters"])
        rows.append((c["label"] + mark, size, f"{c['val_cv_nll']:.4f} ± {c['val_cv_nll_se']:.4f}", c["test"]))
    lines = [
        f"# {title}",
        "",
        f"- {report['n_val']:,} validation and {report['n_test']:,} test rows, {report['num_classes']} classes, "
        f"scores given as {report['kind']}; {report['n_bins']} equal-width bins "
        + ("[lo, hi)" if report["bin_closed"] == "left" else "(lo, hi]"),
        f"- every calibrator is fitted on the validation split; the one chosen by the {report['criterion']}",
        f"- the rule here: {rule_text(report)}",
        *(
            [
                "- not fitted, estimated too slow for this input (name them to fit them anyway): "
                + ", ".join(f"{e['label']} (about {_duration(e['estimated_seconds'])})" for e in report["skipped"])
            ]
            if report.get("skipped")
            else []
        ),
        f"- test metrics with {report['interval']}" if report["n_boot"] else f"- test metrics, {report['interval']}",
        "",
        "| calibrator | parameters | val CV NLL ± SE | " + " | ".join(heads) + " |",
        "|" + "---|" * (len(heads) + 3),
        *[
            f"| {name} | {size} | {cv} | " + " | ".join(_cell(m[k], k) for k in keys) + " |"
            for name, size, cv, m in rows
        ],
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
