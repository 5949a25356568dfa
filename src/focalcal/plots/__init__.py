"""Drawing only: every function takes numbers computed elsewhere and returns a matplotlib Figure.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global backend state), so they render
without a display; saving is the caller's job (:func:`save_figure` is a convenience for the CLI/engine).
"""

from .comparison import error_bar_figure, roc_comparison_figure
from .dynamics import (
    Curves,
    epoch_metric_figure,
    epoch_metrics_row,
    g_figure,
    nll_entropy_figure,
    nll_over_epochs_figure,
    weight_norm_figure,
)
from .reliability import reliability_grid
from .roc import roc_figure, roc_grid
from .save import save_figure
from .sheet import analysis_sheet

__all__ = [
    "Curves",
    "analysis_sheet",
    "epoch_metric_figure",
    "error_bar_figure",
    "epoch_metrics_row",
    "g_figure",
    "nll_entropy_figure",
    "nll_over_epochs_figure",
    "reliability_grid",
    "roc_comparison_figure",
    "roc_figure",
    "roc_grid",
    "save_figure",
    "weight_norm_figure",
]
