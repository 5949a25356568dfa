"""Figures that compare runs: the paper's Fig. 6 (error bars per loss and metric) and Fig. 7 (ROC curves of
several runs on one OOD set). Drawing only: the numbers come from :mod:`focalcal.experiments.table`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError

#: A point with its interval: ``(value, low, high)``; ``low``/``high`` may be None (no interval).
Point = tuple[float, float | None, float | None]


def error_bar_figure(
    panels: Sequence[tuple[str, Sequence[str], Mapping[str, Sequence[Point]]]],
    *,
    ylabel: str = "%",
    suptitle: str | None = None,
) -> Figure:
    """Fig. 6: one panel per ``(title, losses, {series: [point per loss]})``; each series (e.g. "before TS",
    "after TS") is a row of markers with error bars over the losses on the x axis. A point's bar runs from
    ``low`` to ``high``; a side on which the interval does not reach past the value draws no bar.

    Raises:
        InputError: no panels, or a series whose length differs from the number of losses.
    """
    if not panels:
        raise InputError("error_bar_figure needs at least one panel")
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    width = max(4.2, 0.55 * max(len(p[1]) for p in panels) + 1.5)
    fig = Figure(figsize=(width * ncols, 3.8 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    markers = ("o", "s", "^", "D")
    for ax, (title, losses, series) in zip(axes, panels):
        x = np.arange(len(losses), dtype=float)
        n = max(len(series), 1)
        for i, (name, points) in enumerate(series.items()):
            if len(points) != len(losses):
                raise InputError(
                    f"series {name!r} of panel {title!r} has {len(points)} points for {len(losses)} losses"
                )
            v = np.array([p[0] for p in points], dtype=float)
            lo = np.array([p[0] if p[1] is None else p[1] for p in points], dtype=float)
            hi = np.array([p[0] if p[2] is None else p[2] for p in points], dtype=float)
            offset = (i - (n - 1) / 2) * 0.22
            # an interval that does not straddle its value (or a NaN limit) draws no bar on that side
            yerr = [np.fmax(v - lo, 0.0), np.fmax(hi - v, 0.0)]
            ax.errorbar(x + offset, v, yerr=yerr, fmt=markers[i % len(markers)], ms=5, capsize=3, lw=1.2, label=name)
        ax.set_xticks(x, losses, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig


def roc_comparison_figure(
    curves: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]],
    *,
    stages: Sequence[str] = ("before", "after"),
    suptitle: str | None = None,
) -> Figure:
    """Fig. 7: ROC curves of several runs on one OOD set, one panel per stage (before / after TS).

    ``curves``: ``(label, {stage: (fpr, tpr)})`` per run.

    Raises:
        InputError: no curves.
    """
    if not curves:
        raise InputError("roc_comparison_figure needs at least one run")
    fig = Figure(figsize=(5.2 * len(stages), 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(stages)))
    for ax, stage in zip(axes, stages):
        for label, by_stage in curves:
            if stage in by_stage:
                fpr, tpr = by_stage[stage]
                ax.plot(fpr, tpr, lw=1.6, label=label)
        ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false positive rate (in-distribution flagged)")
        ax.set_ylabel("true positive rate (OOD flagged)")
        ax.set_title(f"{stage} temperature scaling", fontsize=10)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig
