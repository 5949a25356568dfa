"""``torchmetrics.Metric`` classes computed by focalcal's own metric kernels (Mukhoti et al. 2020, Sec. 5).

:class:`ECE`, :class:`AdaptiveECE`, :class:`ClasswiseECE`, :class:`MCE` and :class:`ReliabilityBins` drop into
Lightning modules and ``torchmetrics.MetricCollection``; under ``torch.distributed`` their ``compute()``
combines the states of all processes (torchmetrics' sync), so every rank gets the global value.

Each ``update(scores, labels)`` takes ``scores [N, K]`` floating point, logits or probabilities as the
constructor's ``from_logits`` says (never guessed from the values), and ``labels [N]`` integer in ``[0, K)``;
it checks them with :mod:`focalcal.validation` (raising :class:`~focalcal.errors.InputError`) and runs
:func:`~focalcal.metrics.kernel.scan_tensor`, the kernel behind focalcal's functional metrics.

The classes are adapters over :class:`focalcal.metrics.streaming.StateLayout`, the one definition of the
streaming sufficient statistics that :class:`~focalcal.metrics.CalibrationAccumulator` keeps too: each class
registers the layout's tensors as its torchmetrics states (with their reductions, so torchmetrics' own sync
combines them) and delegates ``update`` and ``compute`` to it. Every class has ``n_samples`` (int64, ``"sum"``);

* equal-width top-label bins (ECE, MCE, ``ReliabilityBins``): ``counts`` int64, ``sum_conf``, ``sum_acc``
  float64, each ``[n_bins]``, and ``n_float64`` (samples binned in float64), reduced with ``"sum"``;
* classwise bins: ``cw_diff [K, n_bins]`` float64 (``sum 1[y=k] - p_k`` per class and bin), ``"sum"``;
* AdaECE and equal-mass ``ReliabilityBins`` (equal-mass bins need the global sort): per-sample confidence
  (float64) and correctness (uint8) as list states, gathered with ``"cat"``: O(N) memory, 9 bytes a sample.

``compute()`` equals the functional metric (:func:`~focalcal.metrics.ece`, ...) on the concatenated batches
up to float summation order, as a 0-dim float64 tensor (a fraction, not %). Bin rules are those of
:mod:`focalcal.metrics.binning`; each batch is binned in its working dtype (float64 input: float64, else
float32), as the functional metric bins it (feed batches of one dtype to match it exactly).

A ``MetricCollection`` with ``compute_groups=True`` (its default) shares the states of metrics whose states are
equal after the first batch; give metrics that bin differently (e.g. ``closed="left"`` and ``"right"``)
separate groups or pass ``compute_groups=False``.

Needs the optional extra: ``pip install 'focalcal[torchmetrics]'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

try:
    from torchmetrics import Metric
except ImportError as exc:
    raise ImportError(
        "focalcal.integrations.torchmetrics needs the optional package torchmetrics; "
        "install it with: pip install 'focalcal[torchmetrics]'"
    ) from exc

from ..defaults import BIN_CLOSED, N_BINS
from ..errors import InputError
from ..metrics.binning import BinStats
from ..metrics.kernel import scan_tensor
from ..metrics.streaming import StateLayout
from ..validation import check_binning, check_closed, check_labels, check_n_bins, check_num_classes, check_scores

__all__ = ["ECE", "MCE", "AdaptiveECE", "ClasswiseECE", "ReliabilityBins"]


def _check_from_logits(from_logits: Any) -> bool:
    if not isinstance(from_logits, bool):
        raise InputError(
            "from_logits must be True (update() gets logits; softmax is applied) or False (update() gets "
            f"probabilities); got {from_logits!r}"
        )
    return from_logits


class _FocalcalMetric(Metric):
    """Argument checks, the states of a :class:`~focalcal.metrics.streaming.StateLayout` and the update shared
    by the classes below."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0
    #: The :class:`~focalcal.metrics.streaming.StateLayout` parts the constructor registers (``None``: the subclass
    #: registers its own); a ``classwise`` state has one row per class, so it needs ``num_classes`` (checked first).
    _parts: dict[str, bool] | None = None

    def __init__(
        self,
        n_bins: int = N_BINS,
        num_classes: int | None = None,
        *,
        from_logits: bool | None = None,
        closed: str = BIN_CLOSED,
        **kwargs: Any,
    ) -> None:
        if num_classes is None and (self._parts or {}).get("classwise"):
            raise InputError(
                f"{type(self).__name__} needs num_classes=K (the number of score columns); it is never inferred "
                "from labels"
            )
        n_bins = check_n_bins(n_bins)
        num_classes = None if num_classes is None else check_num_classes(num_classes)
        from_logits = _check_from_logits(from_logits)
        closed = check_closed(closed)
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.num_classes = num_classes
        self.from_logits = from_logits
        self.closed = closed
        if self._parts is not None:
            self._register(**self._parts)

    def _register(self, **parts: bool) -> None:
        """Keep the state layout with these parts and register its tensors as this metric's states."""
        self._layout = StateLayout(self.n_bins, self.num_classes, self.closed, **parts)
        for name, (default, reduction) in self._layout.defaults().items():
            self.add_state(name, default, dist_reduce_fx=reduction)

    def update(self, scores: Tensor, labels: Tensor) -> None:
        """Add a batch: ``scores [N, K]`` float (logits or probabilities, per ``from_logits``), ``labels [N]`` int.

        Raises:
            InputError: wrong shapes or dtypes, labels outside ``[0, K)``, a K other than ``num_classes``,
                NaN/inf, or (``from_logits=False``) rows not summing to 1 or negative entries.
        """
        x = check_scores(scores, "logits" if self.from_logits else "probs")
        n, k = x.shape
        if self.num_classes is not None and k != self.num_classes:
            raise InputError(
                f"scores have {k} columns but the metric was built with num_classes={self.num_classes}; "
                "pass one column per class"
            )
        y = check_labels(labels, n, k, x.device)
        self._layout.update(self, scan_tensor(x, y, from_logits=self.from_logits, **self._layout.scan_options()))


class _EqualWidthTopLabel(_FocalcalMetric):
    """Equal-width bins of the top-label confidence: per-bin count and sums of confidence and correctness."""

    _parts = {"width": True}
    _norm = "l1"

    def compute(self) -> Tensor:
        """The calibration error over all batches (and processes) as a 0-dim float64 tensor (fraction).

        Raises:
            InputError: nothing was accumulated.
        """
        return self._layout.calibration_error(self, "equal_width", self._norm)


class ECE(_EqualWidthTopLabel):
    """Expected calibration error over equal-width bins (Naeini et al. 2015), as in Mukhoti et al. 2020 Sec. 5.

    ``ECE = sum_b count_b / N * |acc_b - conf_b|`` over ``n_bins`` equal-width bins of the top-label
    confidence; equals :func:`focalcal.metrics.ece` on the concatenated batches.

    Args:
        n_bins: number of equal-width bins, >= 1 (the paper uses 15).
        num_classes: K; when given, every batch must have K columns. None: any K >= 2 per batch.
        from_logits: keyword, required: True if ``update()`` gets logits (softmax is applied), False if it
            gets probabilities (rows summing to 1 within 1e-3, non-negative). Never guessed.
        closed: equal-width bin rule, ``"left"`` ``[lo, hi)`` (default; torchmetrics') or ``"right"``
            ``(lo, hi]`` (the paper authors' code); see :mod:`focalcal.metrics.binning`.
        kwargs: passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``, ``process_group``).

    ``update(scores, labels)``: ``scores [N, K]`` floating tensor, ``labels [N]`` integer tensor in ``[0, K)``.
    ``compute()``: 0-dim float64 tensor, a fraction in [0, 1].

    Raises:
        InputError: invalid constructor arguments; invalid batches in ``update()`` (see there);
            ``compute()`` before any sample.

    Example:

    >>> import torch
    >>> from focalcal.integrations.torchmetrics import ECE
    >>> metric = ECE(n_bins=15, from_logits=True)
    >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    >>> metric.update(torch.tensor([[3.0, 0.0], [0.5, 0.0]]), torch.tensor([1, 0]))
    >>> value = metric.compute()
    >>> value.dtype, round(float(value), 4)
    (torch.float64, 0.4296)
    """

    _norm = "l1"


class MCE(_EqualWidthTopLabel):
    """Maximum calibration error (Naeini et al. 2015), as in Mukhoti et al. 2020 Sec. 5.

    ``MCE = max_b |acc_b - conf_b|`` over the non-empty equal-width bins of the top-label confidence;
    equals :func:`focalcal.metrics.mce` on the concatenated batches. Arguments, ``update()``, ``compute()`` and
    errors as :class:`ECE`.

    Example:

    >>> import torch
    >>> from focalcal.integrations.torchmetrics import MCE
    >>> metric = MCE(n_bins=15, from_logits=False)
    >>> metric.update(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]))
    >>> metric.update(torch.tensor([[0.92, 0.08]]), torch.tensor([1]))
    >>> round(float(metric.compute()), 4)
    0.7
    """

    _norm = "max"


class AdaptiveECE(_FocalcalMetric):
    """Adaptive ECE (AdaECE; Nixon et al. 2019), as in Mukhoti et al. 2020 Sec. 5: ECE over equal-mass bins.

    The bins are quantiles of all confidences, so every per-sample top-label confidence (float64) and
    correctness (uint8) is kept: list states gathered across processes with ``"cat"``, O(N) memory. Ties are
    never split (see :mod:`focalcal.metrics.binning`). Equals :func:`focalcal.metrics.adaptive_ece` on the
    concatenated batches.

    Args:
        n_bins: number of equal-mass bins, >= 1 (the paper uses 15).
        num_classes, from_logits, kwargs: as :class:`ECE` (no ``closed``: equal-mass bins have no edge rule).

    ``update()``, ``compute()`` and errors as :class:`ECE`.

    Example:

    >>> import torch
    >>> from focalcal.integrations.torchmetrics import AdaptiveECE
    >>> metric = AdaptiveECE(n_bins=2, from_logits=False)
    >>> metric.update(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]))
    >>> metric.update(torch.tensor([[0.6, 0.4], [0.2, 0.8]]), torch.tensor([0, 1]))
    >>> round(float(metric.compute()), 4)
    0.15
    """

    _parts = {"confidences": True}

    def __init__(
        self, n_bins: int = N_BINS, num_classes: int | None = None, *, from_logits: bool | None = None, **kwargs: Any
    ) -> None:  # no ``closed``: equal-mass bins have no edge rule
        super().__init__(n_bins, num_classes, from_logits=from_logits, **kwargs)

    def compute(self) -> Tensor:
        """AdaECE over all batches (and processes) as a 0-dim float64 tensor (fraction).

        Raises:
            InputError: nothing was accumulated.
        """
        return self._layout.calibration_error(self, "equal_mass", "l1")


class ClasswiseECE(_FocalcalMetric):
    """Classwise ECE (Kull et al. 2019), as in Mukhoti et al. 2020 Sec. 5.

    For each class k the equal-width binned calibration error of ``p_k`` against ``1[y = k]``, averaged over
    the K classes: ``sum_k sum_b |sum_{i in b} (1[y_i=k] - p_ik)| / (N K)``. Equals
    :func:`focalcal.metrics.classwise_ece` on the concatenated batches. State: ``[K, n_bins]`` float64.

    Args:
        n_bins: number of equal-width bins per class, >= 1 (the paper uses 15).
        num_classes: K, required (the state has one row per class and must have the same shape on every
            process); every batch must have K columns. Never inferred from the labels.
        from_logits, closed, kwargs: as :class:`ECE`.

    ``update()`` and ``compute()`` as :class:`ECE`.

    Raises:
        InputError: ``num_classes`` missing or < 2; otherwise as :class:`ECE`.

    Example:

    >>> import torch
    >>> from focalcal.integrations.torchmetrics import ClasswiseECE
    >>> metric = ClasswiseECE(n_bins=5, num_classes=3, from_logits=False)
    >>> metric.update(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]), torch.tensor([0, 2]))
    >>> metric.update(torch.tensor([[0.2, 0.2, 0.6], [0.5, 0.4, 0.1]]), torch.tensor([2, 1]))
    >>> round(float(metric.compute()), 4)
    0.3333
    """

    _parts = {"classwise": True}

    def compute(self) -> Tensor:
        """Classwise ECE over all batches (and processes) as a 0-dim float64 tensor (fraction).

        Raises:
            InputError: nothing was accumulated.
        """
        value = self._layout.classwise_ece(self)
        return torch.tensor(value, dtype=torch.float64, device=self.cw_diff.device)


class ReliabilityBins(_FocalcalMetric):
    """Per-bin statistics of the top-label confidence (reliability-diagram data), Mukhoti et al. 2020 Sec. 5.

    ``compute()`` returns a :class:`focalcal.metrics.BinStats` (numpy arrays: ``edges [n_bins + 1]`` float64,
    ``counts [n_bins]`` int64, ``mean_confidence`` and ``accuracy [n_bins]`` float64 fractions), equal to
    :func:`focalcal.metrics.reliability_bins` on the concatenated batches; its ``calibration_error("l1")`` is
    the ECE (equal width, Naeini et al. 2015) or AdaECE (equal mass, Nixon et al. 2019). Equal-width edges
    are ``linspace(0, 1)`` in float64 when every batch was float64, else in float32 (the dtype the functional
    version bins in). Equal-width states are ``[n_bins]`` sums; equal-mass keeps every sample (as
    :class:`AdaptiveECE`).

    Args:
        n_bins: number of bins, >= 1 (the paper uses 15).
        binning: ``"equal_width"`` (default) or ``"equal_mass"``.
        num_classes, from_logits, closed, kwargs: as :class:`ECE` (``closed``: equal-width bins only).

    ``update()`` and errors as :class:`ECE`. Calling the metric (``forward``) returns the batch's ``BinStats``
    but does not keep it as ``_forward_cache`` (torchmetrics cannot move a frozen dataclass between devices).

    Example:

    >>> import torch
    >>> from focalcal.integrations.torchmetrics import ReliabilityBins
    >>> metric = ReliabilityBins(n_bins=2, from_logits=False)
    >>> metric.update(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]))
    >>> metric.update(torch.tensor([[0.6, 0.4]]), torch.tensor([1]))
    >>> stats = metric.compute()
    >>> stats.counts.tolist(), stats.accuracy.tolist(), round(stats.calibration_error("l1"), 4)
    ([0, 3], [0.0, 0.3333333333333333], 0.4)
    """

    def __init__(
        self,
        n_bins: int = N_BINS,
        num_classes: int | None = None,
        *,
        from_logits: bool | None = None,
        binning: str = "equal_width",
        closed: str = BIN_CLOSED,
        **kwargs: Any,
    ) -> None:
        binning = check_binning(binning)
        super().__init__(n_bins, num_classes, from_logits=from_logits, closed=closed, **kwargs)
        self.binning = binning
        self._register(width=binning == "equal_width", confidences=binning == "equal_mass")

    def compute(self) -> BinStats:
        """:class:`~focalcal.metrics.BinStats` over all batches (and processes).

        (Internally this method returns the synced states, in the layout's order; torchmetrics caches those, and
        the wrapper set up by ``_wrap_compute`` turns them into the ``BinStats`` that ``metric.compute()``
        returns.)

        Raises:
            InputError: nothing was accumulated.
        """
        self._layout.n_samples(self)
        stored = dict(zip(("conf", "correct"), self._layout.stored(self))) if self._layout.confidences else {}
        return tuple(stored.get(name, getattr(self, name)) for name in self._layout.defaults())  # type: ignore[return-value]

    def _to_bin_stats(self, raw: tuple[Tensor, ...]) -> BinStats:
        state = SimpleNamespace()
        for (name, (default, _)), value in zip(self._layout.defaults().items(), raw):
            # torchmetrics squeezes one-element tensors (n_bins = 1, N = 1): back to the state's shape
            setattr(state, name, value.reshape(-1) if isinstance(default, list) else value.reshape(default.shape))
        return self._layout.reliability_bins(state, self.binning)

    def _wrap_compute(self, compute: Callable) -> Callable:
        # torchmetrics' wrapper (sync, cache, clone) maps over the result with apply_to_collection, which refuses
        # frozen dataclasses such as BinStats: let it handle the raw tensors, and build the BinStats afterwards.
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def to_bin_stats(*args: Any, **kwargs: Any) -> BinStats:
            return self._to_bin_stats(wrapped(*args, **kwargs))

        return to_bin_stats

    def forward(self, *args: Any, **kwargs: Any) -> BinStats:
        """``update()`` with this batch and return the batch's :class:`~focalcal.metrics.BinStats`."""
        out = super().forward(*args, **kwargs)
        self._forward_cache = None  # a frozen dataclass; torchmetrics' _apply (.to(), .cuda()) cannot map over it
        return out
