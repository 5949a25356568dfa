"""ROC curves of OOD detection: true positive rate (OOD inputs flagged) against false positive rate
(in-distribution inputs flagged), as computed by :func:`focalcal.metrics.ood.ood_roc_curve`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError

#: ``label -> (fpr, tpr)``: one curve per label, drawn in order.
RocCurves = Mapping[str, tuple[np.ndarray, np.ndarray]]
_STYLES = ("-", "--", ":", "-.")


def _draw(ax: Axes, curves: RocCurves, title: str | None, tpr_level: float | None) -> None:
    for i, (label, (fpr, tpr)) in enumerate(curves.items()):
        ax.plot(np.asarray(fpr, float), np.asarray(tpr, float), ls=_STYLES[i % len(_STYLES)], lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="chance")
    if tpr_level is not None:
        ax.axhline(tpr_level, color="#b0302a", lw=0.6, ls=(0, (2, 2)), label=f"TPR {100 * tpr_level:g}%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("FPR (in-distribution flagged)")
    ax.set_ylabel("TPR (OOD flagged)")
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)


def roc_figure(curves: RocCurves, *, title: str | None = None, tpr_level: float | None = 0.95) -> Figure:
    """One ROC panel.

    Args:
        curves: ``{label: (fpr [M], tpr [M])}``, fractions in [0, 1]; e.g. ``{"before TS": (fpr, tpr)}``.
        title: panel title.
        tpr_level: draw a horizontal guide at this TPR (where FPR@95%TPR is read); ``None``: no guide.

    Raises:
        ValueError: no curves.
    """
    return roc_grid([(title, curves)], tpr_level=tpr_level)


def roc_grid(
    panels: Sequence[tuple[str | None, RocCurves]],
    *,
    ncols: int | None = None,
    tpr_level: float | None = 0.95,
    suptitle: str | None = None,
) -> Figure:
    """Several ROC panels in a grid: ``panels`` is a list of ``(title, curves)`` (see :func:`roc_figure`).

    Raises:
        ValueError: no panels, or a panel without curves.
    """
    if not panels:
        raise InputError("roc_grid needs at least one panel")
    if any(not curves for _, curves in panels):
        raise InputError("every ROC panel needs at least one curve")
    ncols = ncols or min(len(panels), 4)
    nrows = (len(panels) + ncols - 1) // ncols
    fig = Figure(figsize=(3.3 * ncols, 3.4 * nrows + (0.3 if suptitle else 0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels):
        _draw(ax, curves, title, tpr_level)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
