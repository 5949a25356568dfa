"""Reliability diagrams (Guo et al., 2017; the paper's Fig. 1): accuracy vs confidence per bin, the gap to
the diagonal, and the confidence histogram below. They draw a ``BinStats`` computed by
:func:`focalcal.metrics.reliability_bins`, so the picture shows the very numbers the ECE used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from ..errors import InputError

_LABELS = {"ece": "ECE", "adaptive_ece": "AdaECE", "classwise_ece": "CW-ECE", "mce": "MCE", "error": "Error"}


def _draw(ax_top: Axes, ax_hist: Axes, bins, title: str | None, metrics: Mapping[str, float] | None) -> None:
    edges = np.asarray(bins.edges, dtype=float)
    counts = np.asarray(bins.counts)
    acc = np.asarray(bins.accuracy, dtype=float)
    conf = np.asarray(bins.mean_confidence, dtype=float)
    left, width = edges[:-1], np.diff(edges)
    filled = counts > 0

    def bars(mask: np.ndarray, low: np.ndarray, high: np.ndarray, label: str, **style: object) -> None:
        # only what the panel shows gets a legend entry: a bar call with no bars would add an entry drawn in
        # matplotlib's default colour, not its own
        if mask.any():
            ax_top.bar(
                left[mask],
                (high - low)[mask],
                bottom=low[mask],
                width=width[mask],
                align="edge",
                linewidth=0.6,
                label=label,
                **style,
            )

    bars(filled, np.zeros_like(acc), acc, "accuracy", color="#3b75af", edgecolor="black")
    # the gap between accuracy and mean confidence: above the bar where over-confident (conf > acc), and
    # inside the bar where under-confident (acc > conf), drawn opaque in its own colour so that it never
    # mixes with the accuracy bar
    over_style = {"color": "#e2736b", "alpha": 0.6, "edgecolor": "#b0302a", "hatch": "//"}
    under_style = {"color": "#f4c542", "alpha": 1.0, "edgecolor": "#8a6d00", "hatch": "\\\\", "zorder": 3}
    bars(filled & (conf > acc), acc, conf, "gap: over-confident", **over_style)
    bars(filled & (acc > conf), conf, acc, "gap: under-confident", **under_style)
    ax_top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax_top.set_xlim(0, 1)
    ax_top.set_ylim(0, 1)
    ax_top.set_ylabel("accuracy")
    ax_top.legend(loc="upper left", fontsize=7, frameon=False)
    if title:
        ax_top.set_title(title, fontsize=10)
    if metrics:
        text = "\n".join(f"{_LABELS.get(k, k)} {100 * v:.2f}%" for k, v in metrics.items() if k in _LABELS)
        ax_top.text(
            0.97,
            0.03,
            text,
            transform=ax_top.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"},
        )

    total = max(int(counts.sum()), 1)
    ax_hist.bar(left, counts / total, width=width, align="edge", color="#7f7f7f", edgecolor="black", lw=0.5)
    ax_hist.set_xlim(0, 1)
    ax_hist.set_xlabel("confidence (top-label probability)")
    ax_hist.set_ylabel("fraction")


def reliability_grid(
    panels: Sequence[tuple[str | None, object, Mapping[str, float] | None]],
    *,
    ncols: int | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Several reliability diagrams side by side: ``panels`` is a list of ``(title, BinStats, metrics)``.

    Draws into ``fig`` (a Figure or SubFigure, e.g. a row of an analysis sheet) when given, else into a new
    Figure sized to the grid. Raises ``ValueError`` when ``panels`` is empty.
    """
    if not panels:
        raise InputError("reliability_grid needs at least one panel")
    ncols = ncols or len(panels)
    nrows = (len(panels) + ncols - 1) // ncols
    if fig is None:
        fig = Figure(figsize=(3.4 * ncols, 4.4 * nrows), layout="constrained")
    grid = fig.add_gridspec(2 * nrows, ncols, height_ratios=[3, 1] * nrows)
    for i, (title, bins, metrics) in enumerate(panels):
        r, c = divmod(i, ncols)
        ax_top = fig.add_subplot(grid[2 * r, c])
        ax_hist = fig.add_subplot(grid[2 * r + 1, c], sharex=ax_top)
        _draw(ax_top, ax_hist, bins, title, metrics)
    return fig
