"""AdaFocal: calibration-aware adaptive focal loss (Ghosh, Schaaf, Gormley, NeurIPS 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .base import CalibrationLoss, guarded_pow, true_class_log_prob

__all__ = ["AdaFocalLoss", "adafocal_gamma_update"]


def adafocal_gamma_update(
    gammas: Tensor,
    gaps: Tensor,
    *,
    lam: float,
    switch_threshold: float,
    gamma_min: float,
    gamma_max: float,
) -> Tensor:
    """One AdaFocal gamma update per bin (vectorised over bins).

    With ``gap_b = C_val,b - A_val,b`` (mean confidence minus accuracy of validation bin b; > 0 means
    over-confident):

    1. ``gamma_b > 0`` (focal): ``gamma_b <- gamma_b * exp(lam * gap_b)`` -- more focal when over-confident;
       ``gamma_b <= 0`` (inverse-focal, magnitude ``|gamma_b|``): ``gamma_b <- gamma_b * exp(-lam * gap_b)``
       -- less inverse-focal when over-confident;
    2. switch: if ``|gamma_b| < switch_threshold`` then a positive gamma becomes ``-switch_threshold``
       (focal -> inverse-focal) and a non-positive one ``+switch_threshold`` (inverse -> focal);
    3. clip to ``[gamma_min, gamma_max]``.

    This is the rule of the paper (Algorithm 1), as in the authors' code. Returns a new tensor.
    """
    scale = torch.exp(torch.where(gammas > 0, lam * gaps, -lam * gaps))
    updated = gammas * scale
    small = updated.abs() < switch_threshold
    switched = torch.where(updated > 0, -switch_threshold, switch_threshold).to(updated.dtype)
    updated = torch.where(small, switched, updated)
    return updated.clamp(gamma_min, gamma_max)


class AdaFocalLoss(CalibrationLoss):
    """AdaFocal: per-confidence-bin gamma, updated after every epoch from validation calibration.

    Registry name ``"adafocal"``. ``needs_validation = True``: the engine calls
    :meth:`update_from_validation` with the validation logits/labels after each epoch.

    Loss of a training sample with true-class probability ``p`` that falls in bin b (gamma ``g = gamma_b``):

    * ``g >= 0``: focal ``-(1 - p) ** g * log p``;
    * ``g < 0``: inverse-focal ``-(1 + p) ** |g| * log p`` (pushes confidence *up*; used where the model is
      under-confident).

    Bins: ``num_bins`` bins over [0, 1], uniform at the start. Each :meth:`update_from_validation`
    (1) takes the top-label confidence ``r = max softmax`` and correctness of every validation row,
    (2) places equal-mass (adaptive) bin edges at the ``b / num_bins`` quantiles of ``r`` (``torch.quantile``,
    linear interpolation), (3) computes ``gap_b = mean r - accuracy`` per bin (0 for an empty bin, leaving
    its gamma unchanged), (4) updates each bin's gamma with :func:`adafocal_gamma_update` and (5) stores the
    new edges. Bins are ``(lower, upper]``, the first open below and the last open above, so every
    confidence falls in exactly one bin (the authors' equal-count binning drops the lowest-confidence
    sample). During training a sample is assigned to a bin by its (detached) *true-class* probability
    ``p``, as in the authors' code; the validation bins use the top-label confidence.

    Simplifications / choices (documented deviations): gamma is updated once per epoch (the authors' code
    can also update every n batches); quantile edges use ``torch.quantile`` rather than ``np.interp`` on
    positions ``0..N`` (the edges differ by at most one sample's rank); rows with ``ignore_index`` are
    dropped from the validation statistics.

    Args:
        num_classes: K.
        num_bins: number of bins (>= 1), default 15.
        lam: update rate ``lambda > 0``, default 1.
        gamma_initial: starting gamma of every bin, default 1.
        gamma_min, gamma_max: clipping range, default [-2, 20].
        switch_threshold: ``S_th > 0``, default 0.2.
        **kwargs: shared ``CalibrationLoss`` arguments.

    State (buffers, in ``state_dict``): ``bin_edges [num_bins - 1]`` inner edges, ``gammas [num_bins]``,
    ``last_gaps [num_bins]`` (the gaps of the latest update, for logging) and ``num_updates`` (int64).

    Source: Ghosh, Schaaf, Gormley, "AdaFocal: Calibration-aware Adaptive Focal Loss", NeurIPS 2022,
    Algorithm 1; defaults from the authors' code (15 bins, lambda 1, gamma_0 1, [-2, 20], S_th 0.2).
    """

    needs_validation = True

    def __init__(
        self,
        num_classes: int,
        num_bins: int = 15,
        lam: float = 1.0,
        gamma_initial: float = 1.0,
        gamma_min: float = -2.0,
        gamma_max: float = 20.0,
        switch_threshold: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise InputError(f"num_bins must be an integer >= 1, got {num_bins!r}")
        try:
            lam, gamma_initial, gamma_min, gamma_max, switch_threshold = (
                float(v) for v in (lam, gamma_initial, gamma_min, gamma_max, switch_threshold)
            )
        except (TypeError, ValueError) as exc:
            raise InputError("AdaFocal lam/gamma_initial/gamma_min/gamma_max/switch_threshold must be numbers") from exc
        if not 0.0 < lam < float("inf"):
            raise InputError(f"lam must be a finite number > 0, got {lam}")
        if not 0.0 < switch_threshold < float("inf"):
            raise InputError(f"switch_threshold must be a finite number > 0, got {switch_threshold}")
        if not (gamma_min <= -switch_threshold and switch_threshold <= gamma_max < float("inf")):
            raise InputError(
                "need gamma_min <= -switch_threshold and switch_threshold <= gamma_max (finite), got "
                f"gamma_min={gamma_min}, gamma_max={gamma_max}, switch_threshold={switch_threshold}"
            )
        if not gamma_min <= gamma_initial <= gamma_max:
            raise InputError(f"gamma_initial={gamma_initial} must be within [gamma_min, gamma_max]")
        self.num_bins = num_bins
        self.lam = lam
        self.gamma_initial = gamma_initial
        self.gamma_min = gamma_min
        self.gamma_max = gamma_max
        self.switch_threshold = switch_threshold
        self.bin_edges: Tensor
        self.gammas: Tensor
        self.last_gaps: Tensor
        self.num_updates: Tensor
        edges = torch.arange(1, num_bins, dtype=torch.float32) / num_bins
        self.register_buffer("bin_edges", edges)
        self.register_buffer("gammas", torch.full((num_bins,), gamma_initial, dtype=torch.float32))
        self.register_buffer("last_gaps", torch.zeros(num_bins, dtype=torch.float32))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    def bin_index(self, confidence: Tensor) -> Tensor:
        """Bin of each confidence ``[N]`` -> int64 ``[N]``; bins are ``(lower, upper]``."""
        return torch.bucketize(confidence.to(self.bin_edges.dtype), self.bin_edges, right=False)

    def sample_gammas(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Signed gamma ``[N]`` (float32) each training sample gets now; no gradient."""
        with torch.no_grad(), torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, _ = self._prepare(logits, labels)
            return self.gammas[self.bin_index(true_class_log_prob(x, y).exp())]

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        log_p = true_class_log_prob(logits, labels)
        gamma = self.gammas[self.bin_index(log_p.detach().exp())]
        one_minus_p = -torch.expm1(log_p)
        base = torch.where(gamma >= 0, one_minus_p, 1.0 + log_p.exp())
        return -guarded_pow(base, gamma.abs()) * log_p

    @torch.no_grad()
    def update_from_validation(self, logits: Tensor, labels: Tensor) -> None:
        """Update bin edges and per-bin gammas from validation ``logits [N, K]`` and ``labels [N]``.

        Rows with ``labels == ignore_index`` are dropped. An empty validation set leaves the state unchanged.
        """
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, keep = self._prepare(logits, labels)
            x, y = x[keep], y[keep]
            if x.shape[0] == 0:
                return
            conf, pred = F.softmax(x, dim=1).max(dim=1)
            correct = (pred == y).to(torch.float32)
            device = self.gammas.device
            conf, correct = conf.to(device), correct.to(device)
            q = torch.arange(1, self.num_bins, dtype=torch.float32, device=device) / self.num_bins
            edges = torch.quantile(conf, q) if self.num_bins > 1 else self.bin_edges
            # Per-bin sums through a one-hot matrix rather than bincount/scatter_add: deterministic on CUDA
            # (bincount with weights raises under torch.use_deterministic_algorithms).
            member = F.one_hot(torch.bucketize(conf, edges, right=False), self.num_bins).to(torch.float32)
            counts = member.sum(dim=0)
            conf_sum = conf @ member
            acc_sum = correct @ member
            gaps = torch.where(counts > 0, (conf_sum - acc_sum) / counts.clamp_min(1.0), torch.zeros_like(counts))
            self.gammas.copy_(
                adafocal_gamma_update(
                    self.gammas,
                    gaps,
                    lam=self.lam,
                    switch_threshold=self.switch_threshold,
                    gamma_min=self.gamma_min,
                    gamma_max=self.gamma_max,
                )
            )
            self.bin_edges.copy_(edges)
            self.last_gaps.copy_(gaps)
            self.num_updates += 1

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_bins={self.num_bins}, lam={self.lam}, "
            f"gamma_range=[{self.gamma_min}, {self.gamma_max}], switch_threshold={self.switch_threshold}"
        )
