"""Streaming (batch-by-batch, multi-process) accumulation of the calibration summary.

The streaming state is defined once, by :class:`StateLayout`: its tensors (all float64/int64 sums, so batches
and processes add exactly), their update from one kernel scan and every metric computed from them.
:class:`CalibrationAccumulator` keeps all of it:

* equal-width top-label bins: ``counts``, ``sum_conf``, ``sum_acc`` -- O(n_bins);
* classwise: ``sum_k,b (1[y=k] - p_k)`` per class and bin -- O(K * n_bins);
* sums of NLL and Brier, number correct, number of samples -- O(1);
* AdaECE needs the global sort of all confidences, so (with ``store_confidences=True``, the default) the
  top-label confidences and correctness of every sample are kept: O(N) memory (8 + 1 bytes a sample).

The ``torchmetrics`` classes of :mod:`focalcal.integrations.torchmetrics` register the same tensors as their
states and compute through the same :class:`StateLayout` methods.

``compute()`` gives the same numbers as :func:`~focalcal.metrics.calibration_summary` on the concatenated
batches (up to float summation order). When ``torch.distributed`` is initialised, ``compute()`` first
combines the state of all processes (``sync()``: one ``all_reduce`` of the packed sums and a padded
all-gather of the stored confidences, :func:`focalcal.distributed_ops.all_gather_rows`), so every rank gets
the global metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..defaults import BIN_CLOSED, N_BINS
from ..distributed_ops import all_gather_rows, collective_device, is_distributed
from ..errors import InputError
from ..validation import check_closed, check_labels, check_n_bins, pick_scores
from .binning import BinStats, bin_stats, bin_sums, binned_error
from .calibration import classwise_from_diff
from .kernel import Scan, equal_width_edges, scan_tensor

#: How a state combines across processes (torchmetrics' ``dist_reduce_fx``): tensors add, lists concatenate.
SUM, CAT = "sum", "cat"
#: The dtype of each list state's elements.
LIST_DTYPES = {"conf": torch.float64, "correct": torch.uint8}
NO_SAMPLES = "no samples accumulated yet: call update() first"


def stored_values(values: Tensor | list[Tensor], dtype: torch.dtype) -> Tensor:
    """A list state as one 1-D tensor (after torchmetrics' sync the list is already one concatenated tensor)."""
    if isinstance(values, Tensor):
        return values.reshape(-1)
    if not values:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([v.reshape(-1) for v in values])


def _add(state: Any, name: str, value: Tensor | int) -> None:
    total = getattr(state, name)
    total += value.to(total.device) if isinstance(value, Tensor) else value


@dataclass(frozen=True)
class StateLayout:
    """The streaming sufficient statistics of the calibration metrics, in one place: their names, shapes, dtypes
    and reductions across processes (:meth:`defaults`), their update from one batch (:meth:`update`) and every
    metric computed from them.

    The state lives in a holder, as attributes of these names: a namespace from :meth:`new_state` (held by
    :class:`CalibrationAccumulator`) or a ``torchmetrics.Metric`` that registered :meth:`defaults` with
    ``add_state`` (:mod:`focalcal.integrations.torchmetrics`), so both hold the same tensors and compute the
    same numbers. Every holder has ``n_samples`` (int64 ``[]``); the parts a metric needs add:

    Attributes:
        n_bins: bins (equal-width or equal-mass), >= 1.
        num_classes: K, for ``classwise`` (None: ``cw_diff`` is ``[0, n_bins]`` until K is known).
        closed: the equal-width bin rule, ``"left"`` ``[lo, hi)`` or ``"right"`` ``(lo, hi]``.
        width: equal-width top-label bins: ``counts`` int64 and the sums ``sum_conf``, ``sum_acc`` float64 of
            the top-label confidence and of correctness, each ``[n_bins]``; ``n_float64`` int64 ``[]``, the
            samples binned in float64 (the reported edges are float64 only when all were).
        classwise: ``cw_diff [K, n_bins]`` float64, ``sum_i 1[y_i=k] - p_ik`` per class and equal-width bin.
        totals: ``n_correct`` int64, ``nll_sum`` (nats) and ``brier_sum`` float64, each ``[]``.
        confidences: ``conf`` (float64) and ``correct`` (uint8), lists of ``[B]`` per-sample top-label
            confidences and correctness, for equal-mass bins (their cuts need the global sort): O(N) memory,
            9 bytes a sample.

    Tensors are combined across processes with ``"sum"``, lists with ``"cat"``; all sums are int64 or float64,
    so batches and processes add up to the one-shot values up to float summation order.
    """

    n_bins: int
    num_classes: int | None = None
    closed: str = BIN_CLOSED
    width: bool = False
    classwise: bool = False
    totals: bool = False
    confidences: bool = False

    def defaults(self) -> dict[str, tuple[Tensor | list, str]]:
        """``name -> (initial value, reduction)`` of every state of this layout, in a fixed order."""
        nb, i64, f64 = self.n_bins, torch.int64, torch.float64
        out: dict[str, tuple[Tensor | list, str]] = {"n_samples": (torch.zeros((), dtype=i64), SUM)}
        if self.width:
            out["counts"] = (torch.zeros(nb, dtype=i64), SUM)
            out["sum_conf"] = (torch.zeros(nb, dtype=f64), SUM)
            out["sum_acc"] = (torch.zeros(nb, dtype=f64), SUM)
            out["n_float64"] = (torch.zeros((), dtype=i64), SUM)
        if self.classwise:
            out["cw_diff"] = (torch.zeros(self.num_classes or 0, nb, dtype=f64), SUM)
        if self.totals:
            out["n_correct"] = (torch.zeros((), dtype=i64), SUM)
            out["nll_sum"] = (torch.zeros((), dtype=f64), SUM)
            out["brier_sum"] = (torch.zeros((), dtype=f64), SUM)
        if self.confidences:
            out["conf"] = ([], CAT)
            out["correct"] = ([], CAT)
        return out

    def new_state(self) -> SimpleNamespace:
        """An empty state (CPU tensors) as a namespace of the :meth:`defaults`."""
        return SimpleNamespace(**{k: [] if isinstance(v, list) else v.clone() for k, (v, _) in self.defaults().items()})

    def scan_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~focalcal.metrics.kernel.scan_tensor` that :meth:`update` needs."""
        return {
            "need_nll": self.totals,
            "need_brier": self.totals,
            "classwise_bins": self.n_bins if self.classwise else None,
            "closed": self.closed,
        }

    def update(self, state: Any, sc: Scan, *, conf_dtype: torch.dtype | None = None) -> None:
        """Add one batch to ``state`` in place.

        Args:
            state: the holder (see the class docstring); the batch's sums are moved to its tensors' device.
            sc: the batch's kernel scan, from :func:`~focalcal.metrics.kernel.scan_tensor` with
                :meth:`scan_options`.
            conf_dtype: bin the top-label confidences in this dtype; None: in the scan's working dtype (float64
                for float64 scores, else float32), as the functional metrics bin them.
        """
        conf = sc.confidence if conf_dtype is None else sc.confidence.to(conf_dtype)
        b = int(conf.shape[0])
        _add(state, "n_samples", b)
        if self.width:
            _, counts, sum_conf, sum_acc = bin_sums(conf, sc.correct, self.n_bins, "equal_width", self.closed)
            _add(state, "counts", counts)
            _add(state, "sum_conf", sum_conf)
            _add(state, "sum_acc", sum_acc)
            if conf.dtype == torch.float64:
                _add(state, "n_float64", b)
        if self.classwise:
            _add(state, "cw_diff", sc.classwise_diff)
        if self.totals:
            _add(state, "n_correct", sc.correct.sum())
            _add(state, "nll_sum", sc.nll.sum())
            _add(state, "brier_sum", sc.brier.sum())
        if self.confidences:
            device = state.n_samples.device
            state.conf.append(conf.to(device, LIST_DTYPES["conf"]))
            state.correct.append(sc.correct.to(device, LIST_DTYPES["correct"]))

    def n_samples(self, state: Any) -> int:
        """Samples in ``state``; raises :class:`InputError` when there are none."""
        n = int(state.n_samples)
        if n == 0:
            raise InputError(NO_SAMPLES)
        return n

    def stored(self, state: Any) -> tuple[Tensor, Tensor]:
        """The stored ``(conf [N] float64, correct [N] uint8)`` of a ``confidences`` layout."""
        return stored_values(state.conf, LIST_DTYPES["conf"]), stored_values(state.correct, LIST_DTYPES["correct"])

    def reliability_bins(self, state: Any, binning: str = "equal_width") -> BinStats:
        """:class:`BinStats` of ``state``: ``"equal_width"`` from the ``width`` sums, ``"equal_mass"`` from the
        stored confidences. Raises :class:`InputError` without samples."""
        n = self.n_samples(state)
        if binning == "equal_mass":
            return bin_stats(*self.stored(state), self.n_bins, "equal_mass")
        # edges: linspace(0, 1) in the dtype the confidences were binned in, as the functional metric's
        edges = equal_width_edges(self.n_bins, torch.float64 if int(state.n_float64) == n else torch.float32)
        counts = state.counts.cpu()
        denom = counts.clamp(min=1).double()
        mean_conf, acc = state.sum_conf.cpu() / denom, state.sum_acc.cpu() / denom
        return BinStats(edges.double().numpy(), counts.numpy(), mean_conf.numpy(), acc.numpy(), binning, self.closed)

    def calibration_error(self, state: Any, binning: str = "equal_width", norm: str = "l1") -> Tensor:
        """ECE (``norm="l1"``) or MCE (``"max"``) over equal-width bins, AdaECE over equal-mass bins: a 0-dim
        float64 tensor (fraction) on the state's device. Raises :class:`InputError` without samples."""
        self.n_samples(state)
        if binning == "equal_width":
            counts, sum_conf, sum_acc = state.counts, state.sum_conf, state.sum_acc
        else:
            _, counts, sum_conf, sum_acc = bin_sums(*self.stored(state), self.n_bins, "equal_mass")
        denom = counts.clamp(min=1).double()
        return binned_error(counts, sum_conf / denom, sum_acc / denom, norm)

    def classwise_ece(self, state: Any) -> float:
        """Classwise ECE (a fraction) from ``cw_diff``. Raises :class:`InputError` without samples."""
        return classwise_from_diff(state.cw_diff, self.n_samples(state))

    def summary(self, state: Any) -> dict[str, float]:
        """The :func:`~focalcal.metrics.calibration_summary` keys of a layout with ``width``, ``classwise`` and
        ``totals`` (``adaptive_ece`` only with ``confidences``): fractions, ``nll`` in nats, ``brier`` in [0, 2].
        Raises :class:`InputError` without samples."""
        n = self.n_samples(state)
        width = self.reliability_bins(state, "equal_width")
        out: dict[str, float] = {
            "error": 1.0 - int(state.n_correct) / n,
            "nll": float(state.nll_sum) / n,
            "ece": width.calibration_error("l1"),
        }
        if self.confidences:
            out["adaptive_ece"] = self.reliability_bins(state, "equal_mass").calibration_error("l1")
        out["classwise_ece"] = self.classwise_ece(state)
        out["mce"] = width.calibration_error("max")
        out["brier"] = float(state.brier_sum) / n
        return out


class CalibrationAccumulator:
    """Accumulate calibration metrics over batches (and processes).

    Args:
        n_bins: bins for ECE / AdaECE / classwise-ECE / MCE (paper: 15).
        num_classes: K; None takes the width of the first batch (never inferred from labels).
        store_confidences: keep per-sample confidences for AdaECE (O(N) memory); without them
            ``compute()`` has no ``adaptive_ece`` key.
        closed: the equal-width bin rule, ``"left"`` ``[lo, hi)`` or ``"right"`` ``(lo, hi]``.

    Attributes:
        state: the accumulated sufficient statistics, a namespace of the tensors :class:`StateLayout` names
            (all of its parts; ``conf`` / ``correct`` only with ``store_confidences``). Confidences are binned
            in the dtype of the first batch (float64 for float64 scores, else float32).

    Example (batch by batch, as in an evaluation loop):

    >>> import torch
    >>> acc = CalibrationAccumulator(n_bins=2, num_classes=2)
    >>> acc.update(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]), labels=torch.tensor([0, 1]))
    >>> acc.update(logits=torch.tensor([[3.0, 0.0], [0.5, 0.0]]), labels=torch.tensor([1, 0]))
    >>> round(acc.compute()["ece"], 4)  # the same as ece() on all four rows
    0.0467
    """

    def __init__(
        self,
        n_bins: int = N_BINS,
        num_classes: int | None = None,
        *,
        store_confidences: bool = True,
        closed: str = BIN_CLOSED,
    ):
        self.n_bins = check_n_bins(n_bins)
        self.closed = check_closed(closed)
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
            raise InputError(f"num_classes must be an integer >= 2; got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.store_confidences = bool(store_confidences)
        self.reset()

    def _layout(self) -> StateLayout:
        return StateLayout(
            self.n_bins,
            self.num_classes,
            self.closed,
            width=True,
            classwise=True,
            totals=True,
            confidences=self.store_confidences,
        )

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self.state = self._layout().new_state()
        self._conf_dtype: torch.dtype | None = None

    @property
    def n_samples(self) -> int:
        return int(self.state.n_samples)

    @torch.no_grad()
    def update(self, *, logits=None, probs=None, labels) -> None:
        """Add a batch: ``logits`` or ``probs`` ``[B, K]`` and ``labels [B]`` (same checks as the metrics)."""
        scores, from_logits = pick_scores(logits, probs)
        b, k = scores.shape
        if self.num_classes is not None and k != self.num_classes:
            raise InputError(f"batch has {k} classes but the accumulator has num_classes={self.num_classes}")
        y = check_labels(labels, b, k, scores.device)
        sc = scan_tensor(scores, y, from_logits=from_logits, **self._layout().scan_options())
        if self.num_classes is None:
            self.num_classes = k
            self.reset()  # nothing accumulated yet: the classwise state takes its K rows
        if self._conf_dtype is None:
            self._conf_dtype = sc.confidence.dtype
        self._layout().update(self.state, sc, conf_dtype=self._conf_dtype)

    # -- distributed ---------------------------------------------------------------------------------
    def _packed(self) -> Tensor:
        """The summed states, flattened into one float64 vector (one ``all_reduce``)."""
        sums = [n for n, (_, red) in self._layout().defaults().items() if red == SUM]
        return torch.cat([getattr(self.state, n).double().reshape(-1) for n in sums])

    def _unpack(self, flat: Tensor) -> None:
        at = 0
        for name, (default, red) in self._layout().defaults().items():
            if red != SUM:
                continue
            part = flat[at : at + default.numel()].reshape(default.shape)
            at += default.numel()
            setattr(self.state, name, part.clone() if default.is_floating_point() else part.round().to(default.dtype))

    def sync(self) -> CalibrationAccumulator:
        """A new accumulator holding the sum of the states of all processes (``self`` is unchanged).

        Without an initialised ``torch.distributed`` process group (or with one process) it is a copy.
        All ranks must call it (it is a collective), with the same ``n_bins`` and ``num_classes``.
        Works with gloo (CPU tensors) and NCCL (tensors moved to the current CUDA device). The stored
        confidences are gathered with :func:`focalcal.distributed_ops.all_gather_rows`.

        Raises:
            InputError: several processes and ``num_classes`` still unknown (no batch and none given).
        """
        out = CalibrationAccumulator(
            self.n_bins, self.num_classes, store_confidences=self.store_confidences, closed=self.closed
        )
        out._conf_dtype = self._conf_dtype
        lists = [n for n, (_, red) in self._layout().defaults().items() if red == CAT]
        if not is_distributed() or dist.get_world_size() == 1:
            out._unpack(self._packed())
            for name in lists:
                values = getattr(self.state, name)
                setattr(out.state, name, [torch.cat(values)] if values else [])
            return out
        if self.num_classes is None:
            raise InputError("cannot sync an accumulator whose num_classes is unknown: pass num_classes=")
        dev = collective_device()
        flat = self._packed().to(dev)
        dist.all_reduce(flat)
        out._unpack(flat.cpu())
        if lists:
            # one gather of [n, len(lists)] float64 rows (uint8 correctness is exact in float64)
            local = [stored_values(getattr(self.state, n), LIST_DTYPES[n]).double() for n in lists]
            rows = all_gather_rows(torch.stack(local, 1).to(dev)).cpu()
            for j, name in enumerate(lists):
                setattr(out.state, name, [rows[:, j].to(LIST_DTYPES[name])])
        return out

    # -- results ------------------------------------------------------------------------------------
    def reliability_bins(self, binning: str = "equal_width", *, sync: bool = True) -> BinStats:
        """:class:`BinStats` of everything seen (equal-mass needs ``store_confidences``)."""
        st = self.sync() if sync else self
        layout = st._layout()
        layout.n_samples(st.state)
        if binning not in ("equal_width", "equal_mass"):
            raise InputError(f"binning must be one of 'equal_width', 'equal_mass'; got {binning!r}")
        if binning == "equal_mass" and not self.store_confidences:
            raise InputError("equal-mass bins need store_confidences=True")
        return layout.reliability_bins(st.state, binning)

    def compute(self, *, sync: bool = True) -> dict[str, float]:
        """The :func:`calibration_summary` keys over all accumulated batches (and processes if ``sync``).

        Returns fractions (``nll`` in nats); ``adaptive_ece`` only with ``store_confidences``.
        """
        st = self.sync() if sync else self
        return st._layout().summary(st.state)
