"""Streaming (batch-by-batch, multi-process) accumulation of the calibration summary.

State per accumulator, all float64/int64 sums so batches and processes add exactly:

* equal-width top-label bins: ``counts``, ``sum_conf``, ``sum_correct`` -- O(n_bins);
* classwise: ``sum_k,b (1[y=k] - p_k)`` per class and bin -- O(K * n_bins);
* sums of NLL and Brier, number correct, number of samples -- O(1);
* AdaECE needs the global sort of all confidences, so (with ``store_confidences=True``, the default) the
  top-label confidences and correctness of every sample are kept: O(N) memory (4 + 1 bytes a sample).

``compute()`` gives the same numbers as :func:`~focalcal.metrics.calibration_summary` on the concatenated
batches (up to float summation order). When ``torch.distributed`` is initialised, ``compute()`` first
combines the state of all processes (``sync()``: one ``all_reduce`` of the packed sums and an
``all_gather`` of the stored confidences), so every rank gets the global metrics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import InputError
from ..validation import check_closed, check_labels, check_n_bins, pick_scores
from .binning import BinStats, bin_stats, bin_sums
from .kernel import equal_width_edges, scan_tensor


def equal_width_bin_stats(
    counts: Tensor, sum_conf: Tensor, sum_acc: Tensor, conf_dtype: torch.dtype, closed: str = "left"
) -> BinStats:
    """:class:`BinStats` from equal-width per-bin sums accumulated over batches (and processes).

    Args:
        counts: ``[n_bins]`` int64 samples per bin; sum_conf, sum_acc: ``[n_bins]`` float64 sums of the
            top-label confidence and of correctness per bin (as :func:`~focalcal.metrics.binning.bin_sums`
            returns them).
        conf_dtype: dtype the confidences were binned in; the edges are ``linspace(0, 1)`` in it, as there.
        closed: the equal-width bin rule the sums were binned with.
    """
    denom = counts.clamp(min=1).double()
    edges = equal_width_edges(int(counts.shape[0]), conf_dtype).double()
    return BinStats(
        edges.numpy(),
        counts.cpu().numpy(),
        (sum_conf / denom).cpu().numpy(),
        (sum_acc / denom).cpu().numpy(),
        "equal_width",
        closed,
    )


class CalibrationAccumulator:
    """Accumulate calibration metrics over batches (and processes).

    Args:
        n_bins: bins for ECE / AdaECE / classwise-ECE / MCE (paper: 15).
        num_classes: K; None takes the width of the first batch (never inferred from labels).
        store_confidences: keep per-sample confidences for AdaECE (O(N) memory); without them
            ``compute()`` has no ``adaptive_ece`` key.
        closed: the equal-width bin rule, ``"left"`` ``[lo, hi)`` or ``"right"`` ``(lo, hi]``.

    Example (batch by batch, as in an evaluation loop):

    >>> import torch
    >>> acc = CalibrationAccumulator(n_bins=2, num_classes=2)
    >>> acc.update(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]), labels=torch.tensor([0, 1]))
    >>> acc.update(logits=torch.tensor([[3.0, 0.0], [0.5, 0.0]]), labels=torch.tensor([1, 0]))
    >>> round(acc.compute()["ece"], 4)  # the same as ece() on all four rows
    0.0467
    """

    def __init__(
        self, n_bins: int = 15, num_classes: int | None = None, *, store_confidences: bool = True, closed: str = "left"
    ):
        self.n_bins = check_n_bins(n_bins)
        self.closed = check_closed(closed)
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
            raise InputError(f"num_classes must be an integer >= 2; got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.store_confidences = bool(store_confidences)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._counts: Tensor | None = None  # [n_bins] int64
        self._sum_conf: Tensor | None = None  # [n_bins] f64
        self._sum_acc: Tensor | None = None  # [n_bins] f64
        self._cw: Tensor | None = None  # [K, n_bins] f64
        self._scalars = torch.zeros(4, dtype=torch.float64)  # nll sum, brier sum, n correct, n
        self._conf: list[Tensor] = []
        self._correct: list[Tensor] = []
        self._conf_dtype: torch.dtype | None = None

    @property
    def n_samples(self) -> int:
        return int(self._scalars[3])

    @torch.no_grad()
    def update(self, *, logits=None, probs=None, labels) -> None:
        """Add a batch: ``logits`` or ``probs`` ``[B, K]`` and ``labels [B]`` (same checks as the metrics)."""
        scores, from_logits = pick_scores(logits, probs)
        b, k = scores.shape
        if self.num_classes is None:
            self.num_classes = k
        elif k != self.num_classes:
            raise InputError(f"batch has {k} classes but the accumulator has num_classes={self.num_classes}")
        y = check_labels(labels, b, k, scores.device)
        sc = scan_tensor(
            scores,
            y,
            from_logits=from_logits,
            need_nll=True,
            need_brier=True,
            classwise_bins=self.n_bins,
            closed=self.closed,
        )
        if self._conf_dtype is None:
            self._conf_dtype = sc.confidence.dtype
        conf = sc.confidence.to(self._conf_dtype)
        _, counts, sum_conf, sum_acc = bin_sums(conf, sc.correct, self.n_bins, "equal_width", self.closed)
        counts, sum_conf, sum_acc, cw = counts.cpu(), sum_conf.cpu(), sum_acc.cpu(), sc.classwise_diff.cpu()
        if self._counts is None:
            self._counts, self._sum_conf, self._sum_acc, self._cw = counts, sum_conf, sum_acc, cw
        else:
            self._counts += counts
            self._sum_conf += sum_conf
            self._sum_acc += sum_acc
            self._cw += cw
        self._scalars += torch.stack(
            [
                sc.nll.sum().cpu(),
                sc.brier.sum().cpu(),
                sc.correct.sum().double().cpu(),
                torch.tensor(float(b), dtype=torch.float64),
            ]
        )
        if self.store_confidences:
            self._conf.append(conf.cpu())
            self._correct.append(sc.correct.cpu())

    # -- distributed ---------------------------------------------------------------------------------
    def _packed(self) -> Tensor:
        k = self.num_classes or 0
        nb = self.n_bins
        if self._counts is None:
            return torch.zeros(3 * nb + k * nb + 4, dtype=torch.float64)
        return torch.cat([self._counts.double(), self._sum_conf, self._sum_acc, self._cw.reshape(-1), self._scalars])

    def _unpack(self, flat: Tensor) -> None:
        nb, k = self.n_bins, self.num_classes
        self._counts = flat[:nb].round().long()
        self._sum_conf = flat[nb : 2 * nb].clone()
        self._sum_acc = flat[2 * nb : 3 * nb].clone()
        self._cw = flat[3 * nb : 3 * nb + k * nb].reshape(k, nb).clone()
        self._scalars = flat[3 * nb + k * nb :].clone()

    def sync(self) -> CalibrationAccumulator:
        """A new accumulator holding the sum of the states of all processes (``self`` is unchanged).

        Without an initialised ``torch.distributed`` process group (or with one process) it is a copy.
        All ranks must call it (it is a collective), with the same ``n_bins`` and ``num_classes``.
        Works with gloo (CPU tensors) and NCCL (tensors moved to the current CUDA device).
        """
        out = CalibrationAccumulator(
            self.n_bins, self.num_classes, store_confidences=self.store_confidences, closed=self.closed
        )
        out._conf_dtype = self._conf_dtype
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            if self._counts is not None:
                out._unpack(self._packed())
            out._conf = [torch.cat(self._conf)] if self._conf else []
            out._correct = [torch.cat(self._correct)] if self._correct else []
            return out
        if self.num_classes is None:
            raise InputError("cannot sync an accumulator whose num_classes is unknown: pass num_classes=")
        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        flat = self._packed().to(dev)
        dist.all_reduce(flat)
        out._unpack(flat.cpu())
        if self.store_confidences:
            conf = torch.cat(self._conf) if self._conf else torch.zeros(0)
            conf = conf.double()
            corr = (torch.cat(self._correct) if self._correct else torch.zeros(0, dtype=torch.bool)).double()
            size = torch.tensor([conf.numel()], dtype=torch.int64, device=dev)
            sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
            dist.all_gather(sizes, size)
            m = max(int(s) for s in sizes)
            pad = torch.zeros(2, m, dtype=torch.float64, device=dev)
            pad[0, : conf.numel()] = conf.to(dev)
            pad[1, : conf.numel()] = corr.to(dev)
            bufs = [torch.zeros_like(pad) for _ in sizes]
            dist.all_gather(bufs, pad)
            cdt = self._conf_dtype or torch.float32
            out._conf = [torch.cat([b[0, : int(s)].cpu() for b, s in zip(bufs, sizes)]).to(cdt)]
            out._correct = [torch.cat([b[1, : int(s)].cpu() for b, s in zip(bufs, sizes)]).bool()]
            if out._conf_dtype is None:
                out._conf_dtype = cdt
        return out

    # -- results ------------------------------------------------------------------------------------
    def reliability_bins(self, binning: str = "equal_width", *, sync: bool = True) -> BinStats:
        """:class:`BinStats` of everything seen (equal-mass needs ``store_confidences``)."""
        st = self.sync() if sync else self
        if st.n_samples == 0:
            raise InputError("no samples accumulated yet: call update() first")
        if binning == "equal_width":
            return equal_width_bin_stats(
                st._counts, st._sum_conf, st._sum_acc, st._conf_dtype or torch.float32, self.closed
            )
        if binning != "equal_mass":
            raise InputError(f"binning must be one of 'equal_width', 'equal_mass'; got {binning!r}")
        if not self.store_confidences:
            raise InputError("equal-mass bins need store_confidences=True")
        return bin_stats(torch.cat(st._conf), torch.cat(st._correct), self.n_bins, "equal_mass")

    def compute(self, *, sync: bool = True) -> dict[str, float]:
        """The :func:`calibration_summary` keys over all accumulated batches (and processes if ``sync``).

        Returns fractions (``nll`` in nats); ``adaptive_ece`` only with ``store_confidences``.
        """
        st = self.sync() if sync else self
        n = st.n_samples
        if n == 0:
            raise InputError("no samples accumulated yet: call update() first")
        width = st.reliability_bins("equal_width", sync=False)
        nll_sum, brier_sum, n_correct, _ = (float(v) for v in st._scalars)
        out: dict[str, Any] = {
            "error": 1.0 - n_correct / n,
            "nll": nll_sum / n,
            "ece": width.calibration_error("l1"),
        }
        if self.store_confidences:
            out["adaptive_ece"] = st.reliability_bins("equal_mass", sync=False).calibration_error("l1")
        out["classwise_ece"] = float(st._cw.abs().sum() / (n * self.num_classes))
        out["mce"] = width.calibration_error("max")
        out["brier"] = brier_sum / n
        return out
