"""The paper's training-dynamics figures and its gradient factor (Mukhoti et al. 2020, Figs. 2-5).

- :func:`nll_entropy_figure` (Fig. 2): NLL and softmax entropy over epochs, for all, correctly and
  incorrectly classified samples of the train (un-augmented subset) and test sets;
- :func:`nll_over_epochs_figure` (Fig. 3): test NLL over epochs for several runs;
- :func:`g_figure` (Fig. 4): ``g(p, gamma)`` against ``p`` with ``g = 1`` and the thresholds it implies;
- :func:`weight_norm_figure` (Fig. 5): the last linear layer's weight norm over epochs.

Every function draws numbers it is given (see :class:`Curves`) and returns a matplotlib ``Figure`` built
without pyplot, or draws into the ``fig`` (a ``Figure`` or ``SubFigure``) it is passed and returns that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..errors import InputError

_GROUPS = (("", "-", "all"), ("_correct", "--", "correct"), ("_incorrect", ":", "incorrect"))
_SPLITS = (("train_eval", "train (un-augmented subset)"), ("test", "test"))
_STATS = (("nll", "NLL (nats)"), ("entropy", "softmax entropy (nats)"))
_MARKER_EPOCHS = 12  # mark points when a run has at most this many epochs
Canvas = Figure | SubFigure


@dataclass(frozen=True)
class Curves:
    """One run's per-epoch numbers.

    Attributes:
        label: legend label, e.g. ``"focal (γ=3)"``.
        epochs: ``[E]`` epoch numbers (1-based: the model after that many epochs).
        columns: log key -> ``[E]`` float array (NaN where not logged), e.g. ``"test_nll"``.
        lr_drops: epochs after which the learning rate was lowered (drawn as vertical lines).
    """

    label: str
    epochs: np.ndarray
    columns: Mapping[str, np.ndarray]
    lr_drops: Sequence[int] = field(default_factory=tuple)

    def get(self, key: str) -> np.ndarray | None:
        """The column, or ``None`` when it is missing or all NaN."""
        y = self.columns.get(key)
        if y is None:
            return None
        y = np.asarray(y, dtype=float)
        return None if np.all(np.isnan(y)) else y

    def points(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(epochs, values)`` of ``key`` over the epochs whose pass ran, or ``None`` when never logged.

        The dynamics passes run every ``dynamics_every`` epochs: for a ``train_eval_*`` or ``test_*`` column the
        epochs without that pass (no ``{split}_n_correct``) are left out, so the line runs through the passes'
        points. A NaN within a pass (a group with no samples) stays, and leaves a gap.
        """
        y = self.get(key)
        if y is None:
            return None
        ran = ~np.isnan(y)
        for split, _ in _SPLITS:
            count = self.get(f"{split}_n_correct")
            if key.startswith(f"{split}_") and count is not None and len(count) == len(y):
                ran = ~np.isnan(count)
        return np.asarray(self.epochs)[ran], y[ran]


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _canvas(fig: Canvas | None, figsize: tuple[float, float]) -> Canvas:
    return fig if fig is not None else Figure(figsize=figsize, layout="constrained")


def _style_epoch_axis(ax: Axes, curves: Sequence[Curves]) -> None:
    drops = sorted({e for c in curves for e in c.lr_drops})
    for i, e in enumerate(drops):
        ax.axvline(e, color="0.6", ls="-", lw=0.9, alpha=0.8, zorder=0, label="lr drop" if i == 0 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.25)


def _marker(c: Curves) -> str | None:
    return "o" if len(c.epochs) <= _MARKER_EPOCHS else None


def _empty(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}\nnot logged", transform=ax.transAxes, ha="center", va="center", color="0.4")


def _subset_size(curves: Sequence[Curves], split: str) -> int | None:
    for c in curves:
        a, b = c.get(f"{split}_n_correct"), c.get(f"{split}_n_incorrect")
        if a is not None and b is not None:
            logged = np.flatnonzero(~np.isnan(a + b))  # the first epoch with a dynamics pass
            if len(logged):
                return int(a[logged[0]] + b[logged[0]])
    return None


def nll_entropy_figure(
    curves: Sequence[Curves], *, log_nll: bool = False, ncols: int = 2, fig: Canvas | None = None
) -> Canvas:
    """Fig. 2: NLL and entropy (nats) over epochs, for all / correctly / incorrectly classified samples.

    Panels: {NLL, entropy} x {train subset, test}. Colour = run, line style = sample group (solid all,
    dashed correct, dotted incorrect). Reads columns ``{train_eval,test}_{nll,entropy}[_correct|_incorrect]``
    (and ``*_n_correct``/``*_n_incorrect`` for the panel titles); a group with no samples in an epoch (NaN)
    leaves a gap.

    Args:
        curves: one :class:`Curves` per run.
        log_nll: logarithmic NLL axis (correct-sample NLL is often orders of magnitude below the rest).
        ncols: 2 (a 2 x 2 grid) or 4 (one row).
        fig: draw into this figure / sub-figure instead of a new one.

    Raises:
        ValueError: no curves, or ``ncols`` not 2 or 4.
    """
    if not curves:
        raise InputError("nll_entropy_figure needs at least one run")
    if ncols not in (2, 4):
        raise InputError(f"ncols must be 2 or 4, got {ncols}")
    fig = _canvas(fig, (9.5, 7.2) if ncols == 2 else (17, 4.4))
    axes = fig.subplots(4 // ncols, ncols, squeeze=False).ravel()
    colors = _colors(len(curves))
    for i, ((stat, ylabel), (split, split_name)) in enumerate((s, p) for s in _STATS for p in _SPLITS):
        ax = axes[i]
        drawn = False
        for c, color in zip(curves, colors):
            for suffix, ls, _ in _GROUPS:
                xy = c.points(f"{split}_{stat}{suffix}")
                if xy is not None:
                    ax.plot(*xy, color=color, ls=ls, lw=1.8 if suffix == "" else 1.3, marker=_marker(c), ms=3)
                    drawn = True
        n = _subset_size(curves, split)
        ax.set_title(
            f"{split_name}: {stat.upper() if stat == 'nll' else stat}" + (f" (n={n})" if n else ""), fontsize=10
        )
        ax.set_ylabel(ylabel)
        _style_epoch_axis(ax, curves)
        if not drawn:
            _empty(ax, f"{split}_{stat}")
        elif stat == "nll" and log_nll:
            ax.set_yscale("log")
    handles = [Line2D([], [], color=col, lw=2, label=c.label) for c, col in zip(curves, colors)]
    handles += [Line2D([], [], color="black", ls=ls, lw=1.3, label=name) for _, ls, name in _GROUPS]
    if any(c.lr_drops for c in curves):
        handles.append(Line2D([], [], color="0.6", ls="-", lw=0.9, label="lr drop"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 7), fontsize=8, frameon=False)
    fig.suptitle("NLL and entropy over training, correctly vs incorrectly classified (Fig. 2)", fontsize=11)
    return fig


def epoch_metric_figure(
    curves: Sequence[Curves], key: str, *, ylabel: str, title: str, log_y: bool = False, fig: Canvas | None = None
) -> Canvas:
    """One per-epoch log column for several runs on one axis (one line per run, lr drops marked).

    Raises:
        ValueError: no curves, or no run has ``key``.
    """
    if not curves:
        raise InputError("epoch_metric_figure needs at least one run")
    if all(c.get(key) is None for c in curves):
        raise InputError(f"no run has {key!r} in its log")
    fig = _canvas(fig, (6, 4.2))
    ax = fig.subplots()
    for c, color in zip(curves, _colors(len(curves))):
        xy = c.points(key)
        if xy is not None:
            ax.plot(*xy, color=color, lw=1.8, marker=_marker(c), ms=3, label=c.label)
    _style_epoch_axis(ax, curves)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig


def epoch_metrics_row(
    curves: Sequence[Curves], panels: Sequence[tuple[str, str, str]], *, fig: Canvas | None = None
) -> Canvas:
    """Several per-epoch columns side by side, one panel per ``(key, ylabel, title)``, every run in each.

    Raises:
        InputError: no curves or panels, or a panel whose key no run logged.
    """
    if not panels:
        raise InputError("epoch_metrics_row needs at least one panel")
    fig = _canvas(fig, (5.2 * len(panels), 4.2))
    for sub, (key, ylabel, title) in zip(fig.subfigures(1, len(panels)), panels):
        epoch_metric_figure(curves, key, ylabel=ylabel, title=title, fig=sub)
    return fig


def nll_over_epochs_figure(curves: Sequence[Curves], *, log_nll: bool = False, fig: Canvas | None = None) -> Canvas:
    """Fig. 3: test NLL (nats; column ``test_nll``) over epochs, one line per run (e.g. CE, focal γ=1,2,3);
    ``log_nll``: logarithmic axis (an early spike can flatten the rest)."""
    return epoch_metric_figure(
        curves, "test_nll", ylabel="test NLL (nats)", log_y=log_nll, title="Test NLL over training (Fig. 3)", fig=fig
    )


def weight_norm_figure(curves: Sequence[Curves], *, fig: Canvas | None = None) -> Canvas:
    """Fig. 5: Frobenius norm of the last linear layer's weight (column ``fc_weight_norm``) over epochs."""
    return epoch_metric_figure(
        curves,
        "fc_weight_norm",
        ylabel="weight norm of last linear layer",
        title="Last-layer weight norm over training (Fig. 5)",
        fig=fig,
    )


def g_figure(
    p: np.ndarray, g_values: Mapping[float, np.ndarray], thresholds: Mapping[float, float], *, fig: Canvas | None = None
) -> Canvas:
    """Fig. 4: ``g(p, gamma)`` against ``p``, the line ``g = 1`` (cross-entropy) and, per gamma, a vertical
    marker at the threshold ``p*`` above which ``g < 1`` (focal loss pushes the last layer less than CE).

    Args:
        p: ``[P]`` probabilities of the true class in [0, 1].
        g_values: gamma -> ``[P]`` values of ``g(p, gamma)``.
        thresholds: gamma -> ``p*`` with ``g(p*, gamma) = 1`` (gammas without one are drawn without a marker).

    Raises:
        ValueError: no gammas, or a curve's length differs from ``p``'s.
    """
    if not g_values:
        raise InputError("g_figure needs at least one gamma")
    p = np.asarray(p, dtype=float)
    fig = _canvas(fig, (6, 4.2))
    ax = fig.subplots()
    for (gamma, g), color in zip(sorted(g_values.items()), _colors(len(g_values))):
        g = np.asarray(g, dtype=float)
        if g.shape != p.shape:
            raise InputError(f"g values for gamma={gamma} have shape {g.shape}, p has {p.shape}")
        pt = thresholds.get(gamma)
        label = f"γ={gamma:g}" + (f"  (g<1 for p>{pt:.3f})" if pt is not None else "")
        ax.plot(p, g, color=color, lw=1.8, label=label)
        if pt is not None:
            ax.axvline(pt, color=color, ls="--", lw=1)
    ax.axhline(1.0, color="black", lw=1, label="g = 1 (cross-entropy)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("p (softmax probability of the true class)")
    ax.set_ylabel("g(p, γ)")
    ax.set_title("Focal / CE last-layer gradient ratio g(p, γ) (Fig. 4)", fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    return fig
