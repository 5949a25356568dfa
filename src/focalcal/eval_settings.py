"""A run's evaluation settings, resolved and checked in one place.

Every number computed after (or during) training depends on four settings: the calibration bins
(``n_bins``), which edge an equal-width bin includes (``bin_closed``), the main temperature fit
(``ts_method``) and the inference batch (``eval_batch_size``, speed and memory only). A run stores them in
its ``config.json`` (:class:`~focalcal.engine.TrainConfig`) and its ``report.json``; a user may override
them for one evaluation. :func:`resolve_settings` takes the run's values and the overrides (``None``: the
run's) and returns an :class:`EvalSettings`, validated once; the trainer's per-epoch validation
(``log.jsonl``), ``focalcal evaluate``, ``focalcal ood``, the reliability diagrams and the tables all take
their settings, and their metrics, from it. What comes after a run's evaluation (``focalcal ood``, the
reliability diagrams, the tables) takes the run's settings from :func:`run_settings`: its ``report.json``'s when
it has one (with the overrides ``focalcal evaluate`` was given), else its ``config.json``'s.

>>> s = resolve_settings({"n_bins": 10, "bin_closed": "right"}, ts_method="ece_grid")
>>> s.n_bins, s.bin_closed, s.ts_method, s.ts_methods
(10, 'right', 'ece_grid', ('ece_grid', 'nll'))
>>> resolve_settings(None, n_bins=0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
focalcal.errors.InputError: invalid evaluation settings: n_bins must be >= 1 (a whole number; ...); got 0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .calibration import TemperatureScaling
from .defaults import BIN_CLOSED, N_BINS, TS_METHOD, TS_METHODS
from .errors import InputError
from .metrics import BinStats, calibration_summary, calibration_summary_and_bins, reliability_bins
from .validation import eval_settings_problems

#: The settings' keys, as ``config.json`` (and, but for ``eval_batch_size``, ``report.json``) name them.
KEYS = ("n_bins", "bin_closed", "ts_method", "eval_batch_size")


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation settings of one run (see the module docstring); construction validates them.

    Attributes:
        n_bins: calibration bins (ECE, AdaECE, classwise-ECE, MCE, reliability diagrams), an int >= 1.
        bin_closed: equal-width bins ``[lo, hi)`` (``"left"``) or ``(lo, hi]`` (``"right"``).
        ts_method: the main temperature fit, ``"nll"`` or ``"ece_grid"``.
        eval_batch_size: inference batch, an int >= 1, or ``None`` for the device's default (speed only).

    Raises:
        InputError: one line listing every invalid value.
    """

    n_bins: int = N_BINS
    bin_closed: str = BIN_CLOSED
    ts_method: str = TS_METHOD
    eval_batch_size: int | None = None

    def __post_init__(self) -> None:
        problems = eval_settings_problems(**dataclasses.asdict(self))
        if problems:
            raise InputError("invalid evaluation settings: " + "; ".join(problems))
        object.__setattr__(self, "n_bins", int(self.n_bins))

    @property
    def ts_methods(self) -> tuple[str, ...]:
        """Every temperature fit, the main one (:attr:`ts_method`) first."""
        return (self.ts_method, *(m for m in TS_METHODS if m != self.ts_method))

    @property
    def binning(self) -> str:
        """The bins in words, as reports state them."""
        rule = "[lo, hi) (torchmetrics)" if self.bin_closed == "left" else "(lo, hi] (the authors' code)"
        return f"equal-width bins {rule}"

    def summary(self, logits: Any, labels: Any) -> dict[str, float]:
        """:func:`~focalcal.metrics.calibration_summary` of ``logits [N, K]`` (float) and ``labels [N]`` (int) with
        these bins: fractions (``nll`` in nats)."""
        return calibration_summary(logits=logits, labels=labels, n_bins=self.n_bins, closed=self.bin_closed)

    def bins(self, logits: Any, labels: Any) -> BinStats:
        """:func:`~focalcal.metrics.reliability_bins` (equal-width) of ``logits [N, K]`` and ``labels [N]``."""
        return reliability_bins(logits=logits, labels=labels, n_bins=self.n_bins, closed=self.bin_closed)

    def summary_and_bins(self, logits: Any, labels: Any) -> tuple[dict[str, float], BinStats]:
        """``(self.summary(...), self.bins(...))`` from one pass over the scores (the same numbers)."""
        return calibration_summary_and_bins(logits=logits, labels=labels, n_bins=self.n_bins, closed=self.bin_closed)

    def batch(self, device: torch.device | str) -> int:
        """The inference batch on ``device``: :attr:`eval_batch_size`, else the device's default
        (:func:`~focalcal.engine.device.default_eval_batch`: 1024 on CUDA, 64 on a CPU); speed and memory only."""
        from .engine.device import default_eval_batch  # here: the engine imports this module

        return self.eval_batch_size or default_eval_batch(torch.device(device))

    def temperature(self, method: str | None = None) -> TemperatureScaling:
        """An unfitted :class:`~focalcal.calibration.TemperatureScaling` (``method``: default the main one) with
        these bins (the ``ece_grid`` fit's ECE)."""
        return TemperatureScaling(method=method or self.ts_method, n_bins=self.n_bins, closed=self.bin_closed)


def _stored(run: Any) -> dict[str, Any]:
    """The settings ``run`` holds: a :class:`~focalcal.engine.TrainConfig` or :class:`EvalSettings` (their
    attributes), a mapping (``config.json`` / ``report.json``: the keys present) or ``None`` (nothing)."""
    if run is None:
        return {}
    if isinstance(run, Mapping):
        return {k: run[k] for k in KEYS if k in run}
    return {k: getattr(run, k) for k in KEYS if hasattr(run, k)}


def resolve_settings(
    run: Any = None,
    *,
    n_bins: int | None = None,
    bin_closed: str | None = None,
    ts_method: str | None = None,
    eval_batch_size: int | None = None,
) -> EvalSettings:
    """The evaluation settings of ``run`` with the user's overrides, validated once.

    Args:
        run: the run's settings: its :class:`~focalcal.engine.TrainConfig`, its ``report.json`` or
            ``config.json`` as a mapping, an :class:`EvalSettings`, or ``None`` (:mod:`focalcal.defaults`).
            Keys it lacks (reports written before ``bin_closed``) take the defaults.
        n_bins, bin_closed, ts_method, eval_batch_size: overrides; ``None`` keeps the run's.

    Returns:
        :class:`EvalSettings`.

    Raises:
        InputError: one line naming every invalid value, and whether it came from the run or was given.
    """
    stored = _stored(run)
    given = {
        k: v
        for k, v in zip(KEYS, (n_bins, bin_closed, ts_method, eval_batch_size))
        if v is not None  # None: the run's
    }
    values = {**stored, **given}
    problems = []
    for key in KEYS:  # one check per key, to say where each bad value came from
        if key not in values:
            continue
        probe = {**dataclasses.asdict(EvalSettings()), key: values[key]}
        for problem in eval_settings_problems(**probe):
            problems.append(problem if key in given else f"{problem} (the run's value; override it or fix the run)")
    if problems:
        raise InputError("invalid evaluation settings: " + "; ".join(problems))
    return EvalSettings(**values)


def run_settings(
    run: str | Path | Any = None,
    *,
    report: Mapping[str, Any] | None = None,
    config: Any = None,
    n_bins: int | None = None,
    bin_closed: str | None = None,
    ts_method: str | None = None,
    eval_batch_size: int | None = None,
) -> EvalSettings:
    """The evaluation settings of a trained run, for everything after its evaluation (``focalcal ood``, the
    reliability diagrams, the tables): its ``report.json``'s ``n_bins``, ``bin_closed`` and ``ts_method`` when it
    has a report (what ``focalcal evaluate`` used, its overrides included; keys an older report lacks take the
    defaults), else its ``config.json``'s; the inference batch, which reports do not record, is always the
    configuration's. Then the overrides, as :func:`resolve_settings`.

    >>> run_settings(report={"n_bins": 7, "ts_method": "ece_grid"}, config={"n_bins": 15, "eval_batch_size": 8})
    EvalSettings(n_bins=7, bin_closed='left', ts_method='ece_grid', eval_batch_size=8)

    Args:
        run: the run folder (a path or :class:`~focalcal.engine.RunFolder`): its ``report.json`` (when present) and
            ``config.json`` are read, each unless given below; ``None``: only ``report`` and ``config``.
        report: the run's ``report.json``, already read (``None``: read from ``run`` when it has one).
        config: the run's configuration, already read: ``config.json`` as a mapping or its
            :class:`~focalcal.engine.TrainConfig` (``None``: read from ``run``).
        n_bins, bin_closed, ts_method, eval_batch_size: overrides; ``None`` keeps the run's.

    Returns:
        :class:`EvalSettings`.

    Raises:
        InputError: an invalid setting, given or stored (as :func:`resolve_settings` says it).
        CheckpointError: the run's ``report.json`` or ``config.json`` cannot be read (it names the file).
    """
    if run is not None:
        from .engine.runfolder import RunFolder  # here: the engine imports this module

        folder = run if isinstance(run, RunFolder) else RunFolder(run)
        if report is None and folder.has_report():
            report = folder.read_report()
        if config is None and folder.has_config():
            config = folder.read_config()
    stored = _stored(config)
    if report is not None:  # the report's bins, bin rule and temperature method; the configuration's batch
        batch = {k: v for k, v in stored.items() if k == "eval_batch_size"}
        stored = {**{k: v for k, v in _stored(report).items() if k != "eval_batch_size"}, **batch}
    return resolve_settings(
        stored, n_bins=n_bins, bin_closed=bin_closed, ts_method=ts_method, eval_batch_size=eval_batch_size
    )
