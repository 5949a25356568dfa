"""The reliability diagram's legend lists only what its panel draws, each entry in the colour of its bars."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from focalcal.metrics import BinStats, reliability_bins
from focalcal.plots import reliability_grid

GAPS = ("gap: over-confident", "gap: under-confident")


def _legend(ax) -> dict[str, tuple[float, ...]]:
    """Each legend entry of a panel -> the RGBA colour its handle is drawn in, checking that the panel draws
    something under that label, in that colour."""
    drawn = {c.get_label(): to_rgba(c.patches[0].get_facecolor()) for c in ax.containers if c.patches}
    drawn.update({ln.get_label(): to_rgba(ln.get_color()) for ln in ax.get_lines()})
    legend = ax.get_legend()
    entries = {}
    for text, handle in zip(legend.get_texts(), legend.legend_handles):
        label = text.get_text()
        assert label in drawn, f"legend entry {label!r} for nothing drawn in the panel"
        colour = to_rgba(handle.get_color() if hasattr(handle, "get_xdata") else handle.get_facecolor())
        assert colour == pytest.approx(drawn[label]), label
        entries[label] = colour
    return entries


def _panels(*bins) -> list:
    """The reliability panels (top axes) of a grid of ``bins``."""
    fig = reliability_grid([(f"p{i}", b, None) for i, b in enumerate(bins)])
    return [ax for ax in fig.axes if ax.get_legend() is not None]


def test_a_panel_with_no_under_confident_bin_has_no_such_legend_entry():
    # real scores: every sample at confidence 0.9, half of them right: over-confident in its one bin
    probs = torch.tensor([[0.9, 0.1]] * 10)
    labels = torch.tensor([0, 1] * 5)
    bins = reliability_bins(probs=probs, labels=labels, n_bins=10)
    assert bins.accuracy[bins.counts > 0].tolist() == [0.5]  # hand computation: 5 of 10 right at 0.9
    (ax,) = _panels(bins)
    assert set(_legend(ax)) == {"accuracy", "gap: over-confident", "perfect calibration"}


def test_each_panel_lists_its_own_gaps_each_in_its_own_colour():
    under_only = BinStats(  # accuracy above confidence in both bins
        edges=np.array([0.0, 0.5, 1.0]),
        counts=np.array([10, 10]),
        mean_confidence=np.array([0.2, 0.7]),
        accuracy=np.array([0.4, 0.8]),
    )
    both = BinStats(  # bin 1 under-confident (0.4 > 0.2), bin 2 over-confident (0.9 > 0.6)
        edges=np.array([0.0, 0.5, 1.0]),
        counts=np.array([10, 10]),
        mean_confidence=np.array([0.2, 0.9]),
        accuracy=np.array([0.4, 0.6]),
    )
    ax_under, ax_both = _panels(under_only, both)
    under = _legend(ax_under)
    assert set(under) == {"accuracy", "gap: under-confident", "perfect calibration"}
    entries = _legend(ax_both)
    assert set(entries) == {"accuracy", *GAPS, "perfect calibration"}
    colours = [entries[k][:3] for k in ("accuracy", *GAPS)]
    assert len(set(colours)) == 3  # accuracy, over- and under-confident gaps apart
    assert under["gap: under-confident"] == entries["gap: under-confident"]


def test_a_perfectly_calibrated_panel_shows_no_gap():
    bins = BinStats(
        edges=np.array([0.0, 0.5, 1.0]),
        counts=np.array([4, 6]),
        mean_confidence=np.array([0.25, 0.75]),
        accuracy=np.array([0.25, 0.75]),
    )
    (ax,) = _panels(bins)
    assert set(_legend(ax)) == {"accuracy", "perfect calibration"}
