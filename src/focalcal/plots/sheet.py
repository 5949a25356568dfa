"""One figure sheet with all of the paper's analysis figures for a set of runs (Figs. 1-5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .dynamics import Curves, g_figure, nll_entropy_figure, nll_over_epochs_figure, weight_norm_figure
from .reliability import reliability_grid

Panel = tuple[str | None, object, Mapping[str, float] | None]


def analysis_sheet(
    curves: Sequence[Curves],
    *,
    p: np.ndarray,
    g_values: Mapping[float, np.ndarray],
    thresholds: Mapping[float, float],
    reliability: Sequence[Panel] = (),
    log_nll: bool = False,
) -> Figure:
    """All analysis figures on one sheet: Fig. 2 (top row), Figs. 3, 4, 5 (middle), Fig. 1 (bottom, if given).

    Args:
        curves: one :class:`~focalcal.plots.dynamics.Curves` per run (columns of Figs. 2, 3 and 5).
        p, g_values, thresholds: as :func:`~focalcal.plots.dynamics.g_figure`.
        reliability: reliability panels ``(title, BinStats, metrics)``; empty leaves the row out.
        log_nll: logarithmic NLL axes (Figs. 2 and 3).

    Raises:
        ValueError: as the individual figures (no runs, a missing column, no gammas).
    """
    rows = 3 if reliability else 2
    width = max(18.0, 3.4 * len(reliability))
    fig = Figure(figsize=(width, 4.8 * rows + 0.6), layout="constrained")
    top, middle, *bottom = fig.subfigures(rows, 1, height_ratios=[1.1, 1.0, 1.15][:rows])
    nll_entropy_figure(curves, log_nll=log_nll, ncols=4, fig=top)
    left, centre, right = middle.subfigures(1, 3)
    nll_over_epochs_figure(curves, log_nll=log_nll, fig=left)
    g_figure(p, g_values, thresholds, fig=centre)
    weight_norm_figure(curves, fig=right)
    if reliability:
        reliability_grid(reliability, fig=bottom[0])
        bottom[0].suptitle(
            "Reliability diagrams on the test split, before / after temperature scaling (Fig. 1)", fontsize=11
        )
    return fig
