"""ROC figures draw the curves they are given."""

import numpy as np
import pytest

from focalcal.metrics.ood import ood_roc_curve
from focalcal.plots import roc_figure, roc_grid


def test_roc_figure_draws_each_curve_and_the_guides():
    fpr, tpr = ood_roc_curve([0.0, 1.0, 2.0], [1.5, 3.0])
    fig = roc_figure({"before TS": (fpr, tpr), "after TS": (fpr, tpr)}, title="svhn")
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["before TS", "after TS"] and "chance" in labels and "TPR 95%" in labels
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), fpr)
    assert ax.get_title() == "svhn"


def test_roc_grid_layout_and_errors():
    curve = {"x": (np.array([0.0, 1.0]), np.array([0.0, 1.0]))}
    fig = roc_grid([(f"set {i}", curve) for i in range(5)], ncols=2)
    assert sum(ax.get_visible() for ax in fig.axes) == 5 and len(fig.axes) == 6
    with pytest.raises(ValueError):
        roc_grid([])
    with pytest.raises(ValueError):
        roc_grid([("empty", {})])
