"""Binning of top-label confidences and the per-bin statistics every binned metric is computed from.

Two binnings (Mukhoti et al. 2020, Sec. 5 "Metrics"; Nixon et al. 2019 for equal mass):

* ``"equal_width"``: ``edges = torch.linspace(0, 1, n_bins + 1)`` in the confidences' dtype (float32 for
  float32 input, as torchmetrics). With ``closed="left"`` (the default) bin b holds
  ``edges[b] <= c < edges[b+1]`` and the last bin is closed, ``[edges[-2], 1]``: a confidence of exactly 0
  is in the first bin and exactly 1 in the last bin. (torchmetrics uses the same half-open bins but puts a
  confidence of exactly 1.0 into an extra ``(n_bins+1)``-th bin of its own; we keep it in the last bin, as
  the metric's definition says.) ``closed="right"`` is the paper authors' rule, ``edges[b] < c <=
  edges[b+1]``, with the first bin closed (their code drops a confidence of exactly 0; we keep it in bin 0).
* ``"equal_mass"``: sort the confidences; bin b starts at the sorted position (cut) ``r_b = ceil(b N /
  n_bins)``, b = 1 .. n_bins - 1, so the sample of rank r (0-based) belongs to bin ``floor(r * n_bins /
  N)``. Tie rule: a cut that falls inside a block of tied confidences (sorted positions ``a .. e - 1``,
  ``a < r_b < e``) moves to the nearer end of the block, ``a`` if ``r_b - a <= e - r_b`` (the lower end on
  a draw) else ``e``. So a tie block is never split, and it is not merged into a bin of other values when
  a cut lies nearer its other end: e.g. a block of saturated confidences of exactly 1.0 that reaches past
  the middle of the last bin gets a bin of its own instead of joining lower confidences (several cuts
  inside one block leave empty bins). Bins hold ``N / n_bins`` samples each up to ties, no sample is
  dropped, and the result depends only on the multiset of (confidence, correct) pairs, not on row order.
  With more bins than samples, or many ties, some bins are empty. ``edges[b]`` is the smallest confidence
  in bin b (``edges[0] = 0``, ``edges[-1] = 1``; an empty bin has zero width at the next bin's lower edge).

Empty bins have ``count 0``, ``mean_confidence 0`` and ``accuracy 0`` and contribute nothing; no NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..defaults import BIN_CLOSED, N_BINS
from ..errors import InputError
from ..validation import check_binning, check_closed, check_n_bins, check_norm
from .kernel import equal_width_edges, equal_width_index, scan


@dataclass(frozen=True)
class BinStats:
    """Per-bin statistics of top-label confidence (the numbers a reliability diagram draws).

    ECE, AdaECE, MCE and the L2/debiased variants are computed from exactly these arrays
    (:meth:`calibration_error`), so a diagram and a table built from one ``BinStats`` agree.

    Attributes:
        edges: ``[n_bins + 1]`` float64, bin edges in [0, 1] (see :mod:`focalcal.metrics.binning`).
        counts: ``[n_bins]`` int64, samples per bin.
        mean_confidence: ``[n_bins]`` float64, mean top-label confidence per bin (0 where empty).
        accuracy: ``[n_bins]`` float64, fraction correct per bin (0 where empty).
        binning: ``"equal_width"`` or ``"equal_mass"``.
        closed: equal-width bin rule, ``"left"`` ``[lo, hi)`` or ``"right"`` ``(lo, hi]``.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    binning: str = "equal_width"
    closed: str = BIN_CLOSED

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    @property
    def proportion(self) -> np.ndarray:
        """``[n_bins]`` fraction of samples per bin."""
        return self.counts / max(self.n_samples, 1)

    @property
    def nonempty(self) -> np.ndarray:
        """``[n_bins]`` bool, bins holding at least one sample."""
        return self.counts > 0

    @property
    def gap(self) -> np.ndarray:
        """``[n_bins]`` ``|accuracy - mean_confidence|`` (0 where empty)."""
        return np.abs(self.accuracy - self.mean_confidence)

    def calibration_error(self, norm: str = "l1", *, debias: bool = False) -> float:
        """Binned calibration error from these statistics, as a fraction.

        Args:
            norm: ``"l1"`` (ECE: ``sum_b count_b / N * gap_b``), ``"l2"`` (RMS: ``sqrt(sum_b count_b / N *
                gap_b^2)``) or ``"max"`` (MCE: ``max_b gap_b`` over non-empty bins).
            debias: only with ``norm="l2"``: the debiased estimator of Kumar, Liang & Ma (2019).
        """
        t = binned_error(
            torch.from_numpy(self.counts),
            torch.from_numpy(self.mean_confidence),
            torch.from_numpy(self.accuracy),
            norm,
            debias=debias,
        )
        return float(t)

    def to_dict(self) -> dict:
        """JSON-able dict of plain lists."""
        return {
            "binning": self.binning,
            "closed": self.closed,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "mean_confidence": self.mean_confidence.tolist(),
            "accuracy": self.accuracy.tolist(),
        }


def equal_mass_cuts(srt: Tensor, n_bins: int) -> Tensor:
    """``[..., n_bins - 1]`` int64 cut positions of equal-mass bins in sorted confidences ``srt [..., N]``
    (sorted along the last dim): bin b starts at sorted position ``cut[b - 1]``, b = 1 .. n_bins - 1.

    The nominal cut ``r_b = ceil(b N / n_bins)`` is kept unless it falls inside a block of tied values
    (``srt[r_b - 1] == srt[r_b]``); then it moves to the nearer end of that block (the lower end on a draw),
    see :mod:`focalcal.metrics.binning`. Cuts are non-decreasing in b.
    """
    n = srt.shape[-1]
    dev = srt.device
    r = torch.tensor([-(-b * n // n_bins) for b in range(1, n_bins)], dtype=torch.int64, device=dev)
    r = r.expand(*srt.shape[:-1], n_bins - 1)
    below = srt.gather(-1, r - 1)
    at = srt.gather(-1, r.clamp(max=n - 1))
    inside = (r < n) & (below == at)
    start = torch.searchsorted(srt, at.contiguous(), right=False)
    end = torch.searchsorted(srt, at.contiguous(), right=True)
    moved = torch.where(r - start <= end - r, start, end)
    return torch.where(inside, moved, r)


def equal_mass_thresholds(conf: Tensor, n_bins: int) -> Tensor:
    """``[..., n_bins - 1]`` thresholds ``tau_b = s_(c_b - 1)``: the order statistics of ``conf`` (along the
    last dim) just below the cuts ``c_b`` of :func:`equal_mass_cuts` (``-inf`` for a cut at 0).

    A confidence v has ``first_rank(v) = #{u < v} >= c_b`` exactly when ``v > tau_b`` (see
    :func:`equal_mass_index`).
    """
    srt = torch.sort(conf, dim=-1).values
    cut = equal_mass_cuts(srt, n_bins)
    tau = srt.gather(-1, (cut - 1).clamp(min=0))
    return torch.where(cut > 0, tau, torch.full_like(tau, -math.inf)).contiguous()


def equal_mass_index(conf: Tensor, n_bins: int) -> Tensor:
    """Equal-mass bin index of each confidence along the last dim (batched over leading dims).

    ``bin = #{b : c_b <= first_rank}`` where ``first_rank = #{u < v}`` is the number of confidences strictly
    smaller than this one and ``c_b`` are the cuts of :func:`equal_mass_cuts` (never inside a tie block), so
    ties share a bin and row order does not matter. Computed as ``#{b : v > tau_b}`` with the thresholds of
    :func:`equal_mass_thresholds`.
    """
    if n_bins == 1:
        return torch.zeros(conf.shape, dtype=torch.int64, device=conf.device)
    tau = equal_mass_thresholds(conf, n_bins).to(conf.device)
    if conf.ndim == 1:
        return torch.bucketize(conf, tau, right=False)
    return torch.searchsorted(tau, conf.contiguous(), right=False)


def bin_sums(
    conf: Tensor, correct: Tensor, n_bins: int, binning: str, closed: str = BIN_CLOSED
) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
    """Per-bin sums of confidences ``conf [..., N]`` and correctness ``correct [..., N]`` (bool or 0/1).

    Leading dims are a batch (e.g. bootstrap resamples or temperatures), binned independently.

    Returns:
        ``(edges, counts, sum_conf, sum_correct)``: ``edges [n_bins+1]`` float64 (None for batched
        equal-mass input), ``counts [..., n_bins]`` int64, the sums ``[..., n_bins]`` float64.
    """
    batch = conf.shape[:-1]
    if binning == "equal_width":
        edges = equal_width_edges(n_bins, conf.dtype, conf.device)
        idx = equal_width_index(conf, edges, closed)
        edges = edges.double()
    else:
        idx = equal_mass_index(conf, n_bins)
        edges = None
    conf64 = conf.double()
    flat = idx
    nb_total = n_bins
    if batch:
        n_rows = math.prod(batch)
        offsets = torch.arange(n_rows, device=conf.device).view(*batch, 1) * n_bins
        flat = (idx + offsets).reshape(-1)
        nb_total = n_rows * n_bins
    counts = torch.bincount(flat.reshape(-1), minlength=nb_total).view(*batch, n_bins)
    sum_conf = torch.bincount(flat.reshape(-1), weights=conf64.reshape(-1), minlength=nb_total).view(*batch, n_bins)
    sum_acc = torch.bincount(flat.reshape(-1), weights=correct.double().reshape(-1), minlength=nb_total)
    sum_acc = sum_acc.view(*batch, n_bins)
    if binning == "equal_mass" and not batch:
        lo = torch.full((n_bins + 1,), float("inf"), dtype=torch.float64, device=conf.device)
        lo.scatter_reduce_(0, idx, conf64, reduce="amin")
        lo[0] = 0.0
        lo[n_bins] = 1.0
        lo = lo.clamp_(max=1.0)
        # empty bins take the next bin's lower edge: reverse cumulative minimum
        edges = torch.flip(torch.cummin(torch.flip(lo, (0,)), 0).values, (0,))
    return edges, counts, sum_conf, sum_acc


def batched_calibration_error(
    conf: Tensor,
    correct: Tensor,
    n_bins: int,
    binning: str = "equal_width",
    norm: str = "l1",
    *,
    debias: bool = False,
    closed: str = BIN_CLOSED,
) -> Tensor:
    """Calibration error of each row of ``conf [B, N]`` / ``correct [B, N]`` -> ``[B]`` float64.

    The same binning and :func:`binned_error` as :class:`BinStats`, for many samples at once.
    """
    _, counts, sum_conf, sum_acc = bin_sums(conf, correct, n_bins, binning, closed)
    denom = counts.clamp(min=1).double()
    return binned_error(counts, sum_conf / denom, sum_acc / denom, norm, debias=debias)


def bin_stats(
    conf: Tensor, correct: Tensor, n_bins: int, binning: str = "equal_width", closed: str = BIN_CLOSED
) -> BinStats:
    """:class:`BinStats` of top-label confidences ``conf [N]`` and correctness ``correct [N]`` (bool)."""
    edges, counts, sum_conf, sum_acc = bin_sums(conf, correct, n_bins, binning, closed)
    denom = counts.clamp(min=1).double()
    return BinStats(
        edges=edges.cpu().numpy(),
        counts=counts.cpu().numpy(),
        mean_confidence=(sum_conf / denom).cpu().numpy(),
        accuracy=(sum_acc / denom).cpu().numpy(),
        binning=binning,
        closed=closed,
    )


def binned_error(counts: Tensor, mean_conf: Tensor, acc: Tensor, norm: str, *, debias: bool = False) -> Tensor:
    """Calibration error from per-bin statistics; bins on the last dim, any leading (batch) dims.

    The one formula behind ECE / AdaECE / MCE / RMS-CE. Empty bins have ``mean_conf = acc = 0`` and
    weight 0. ``debias`` (``norm="l2"`` only) subtracts each bin's sampling variance
    ``acc (1 - acc) / (count - 1)`` from its squared gap (bins with fewer than 2 samples contribute 0),
    then clips the total at 0 before the square root: Kumar, Liang & Ma, "Verified uncertainty
    calibration", NeurIPS 2019, Sec. 5 (their ``unbiased_l2_ce``).
    """
    check_norm(norm)
    if debias and norm != "l2":
        raise InputError(f"debias=True is defined for norm='l2' only; got norm={norm!r}")
    counts = counts.double()
    gap = (acc.double() - mean_conf.double()).abs()
    w = counts / counts.sum(-1, keepdim=True).clamp(min=1)
    if norm == "l1":
        return (w * gap).sum(-1)
    if norm == "max":
        return torch.where(counts > 0, gap, torch.zeros_like(gap)).amax(-1)
    sq = gap.square()
    if debias:
        a = acc.double()
        var = a * (1 - a) / (counts - 1).clamp(min=1)
        sq = torch.where(counts >= 2, sq - var, torch.zeros_like(sq))
    return (w * sq).sum(-1).clamp(min=0).sqrt()


def reliability_bins(
    *,
    logits=None,
    probs=None,
    labels,
    n_bins: int = N_BINS,
    binning: str = "equal_width",
    closed: str = BIN_CLOSED,
) -> BinStats:
    """Per-bin statistics of the top-label confidence (reliability diagram data).

    Args:
        logits: ``[N, K]`` float scores (softmax is applied), torch tensor or numpy array; or
        probs: ``[N, K]`` probabilities (rows sum to 1 within 1e-3, non-negative). Exactly one of the two.
        labels: ``[N]`` integer class indices in ``[0, K)``.
        n_bins: number of bins (>= 1); the paper uses 15.
        binning: ``"equal_width"`` (ECE, MCE) or ``"equal_mass"`` (AdaECE); see the module doc for the
            exact bin rules.
        closed: equal-width bin rule, ``"left"`` ``[lo, hi)`` (default) or ``"right"`` ``(lo, hi]``.

    Returns:
        :class:`BinStats` (numpy arrays; fractions).

    Raises:
        ValueError: on bad shapes, labels outside ``[0, K)``, NaN/inf, un-normalised or negative probs,
            ``n_bins < 1``, empty input, or both/neither of ``logits``/``probs``.

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.0]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> bins = reliability_bins(logits=logits, labels=labels, n_bins=2)
    >>> bins.counts.tolist(), bins.accuracy.tolist(), round(float(bins.mean_confidence[1]), 4)
    ([0, 4], [0.0, 0.75], 0.7967)
    """
    n_bins = check_n_bins(n_bins)
    check_binning(binning)
    check_closed(closed)
    sc = scan(logits=logits, probs=probs, labels=labels)
    return bin_stats(sc.confidence, sc.correct, n_bins, binning, closed)
