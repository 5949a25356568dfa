"""MMCE: maximum mean calibration error as a trainable regulariser (Kumar et al., ICML 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .base import CalibrationLoss, true_class_log_prob

__all__ = ["MMCELoss", "mmce_squared", "laplacian_kernel"]

#: Floor under the squared MMCE before the square root: sqrt has an infinite slope at 0.
_SQRT_FLOOR = 1e-12


def laplacian_kernel(r: Tensor, bandwidth: float = 0.4) -> Tensor:
    """``k(r_i, r_j) = exp(-|r_i - r_j| / bandwidth)`` for confidences ``r [N]`` -> ``[N, N]``."""
    return torch.exp(-(r.unsqueeze(1) - r.unsqueeze(0)).abs() / bandwidth)


def mmce_squared(
    probs: Tensor, labels: Tensor, keep: Tensor, *, weighted: bool, bandwidth: float = 0.4
) -> tuple[Tensor, Tensor]:
    """Squared MMCE of a batch and whether it is defined; both 0-dim tensors (float32, bool).

    ``r_i`` is the top-label confidence ``max_k probs[i, k]`` and ``c_i = 1[argmax_k probs[i, k] = y_i]``;
    only rows with ``keep`` count. With ``k`` the Laplacian kernel,

    * unweighted (Kumar et al.'s MMCE_m estimator), with n the number of rows, defined when n > 0::

          MMCE_m^2 = sum_ij (c_i - r_i)(c_j - r_j) k(r_i, r_j) / n^2

    * weighted (Kumar et al.'s MMCE_w, which corrects for the imbalance between correct and wrong rows),
      with D_c the correct and D_w the wrong rows, m = |D_c|, w = |D_w|::

          MMCE_w^2 = sum_{i,j in D_c} (1 - r_i)(1 - r_j) k_ij / m^2 + sum_{i,j in D_w} r_i r_j k_ij / w^2
                     - 2 sum_{i in D_c, j in D_w} (1 - r_i) r_j k_ij / (m w)

      i.e. ``u^T K u`` with ``u_i = (1 - r_i) / m`` on correct rows and ``-r_i / w`` on wrong ones. Defined
      only when both D_c and D_w are non-empty (an all-correct or all-wrong batch has no MMCE_w).

    Both are squared RKHS norms (the Laplacian kernel is positive definite), so >= 0 up to rounding.
    Runs on the device without synchronisation (masks, not boolean indexing).
    """
    r, pred = probs.max(dim=1)
    m = keep.to(probs.dtype)
    correct = (pred == labels).to(probs.dtype) * m
    wrong = m - correct
    kernel = laplacian_kernel(r, bandwidth)
    if weighted:
        n_c, n_w = correct.sum(), wrong.sum()
        u = correct * (1.0 - r) / n_c.clamp_min(1.0) - wrong * r / n_w.clamp_min(1.0)
        defined = (n_c > 0) & (n_w > 0)
        value = u @ kernel @ u
    else:
        n = m.sum()
        d = (correct - r) * m
        defined = n > 0
        value = (d @ kernel @ d) / n.clamp_min(1.0).square()
    return value, defined


class MMCELoss(CalibrationLoss):
    """Cross-entropy plus MMCE: ``CE + lam * MMCE`` (Kumar, Sarawagi, Jain, ICML 2018).

    Registry names ``"mmce"`` (unweighted MMCE_m) and ``"mmce_weighted"`` (MMCE_w, the variant used by
    Mukhoti et al. 2020 with ``lam = 2``).

    The regulariser is the MMCE itself, the square root of the kernel sum (:func:`mmce_squared`), as in
    Kumar et al.'s training objective ``NLL + lam * (MMCE^2)^(1/2)`` and the authors' weighted code;
    ``squared=True`` uses ``MMCE^2`` instead (what the focal_calibration code's *unweighted* class
    returns). The square root is taken as ``sqrt(max(MMCE^2, 1e-12))``: its gradient is finite
    everywhere (0 below the floor), so an all-correct batch (``MMCE^2 = 0``) gives no NaN. Where MMCE_w is
    undefined (all kept rows correct, or all wrong) the term is 0 with zero gradient, as in the authors'
    code. The MMCE is a batch statistic: it is added to every kept row's CE (see
    ``focalcal.losses.base``), so reduction "mean" gives ``mean CE + lam * MMCE`` -- Kumar et al.'s
    per-batch objective -- and "sum" gives ``sum_i w_i CE_i + lam * sum_i w_i * MMCE``
    (``w_i``: 1 on kept rows, or ``alpha``). Where a sample holds several targets (an SST tree, one label per
    node), the engine's per-sample normalisation counts the MMCE once per sample instead
    (:meth:`~focalcal.losses.base.CalibrationLoss.sum_per_sample`).

    Known difference from the authors' code: their weighted MMCE averages each kernel block with
    ``torch.mean`` *and* divides it again by ``m^2`` / ``w^2`` / ``m w``; this implementation normalises
    once, as in the paper's definition. (Their CE was also summed, not averaged, over the batch.)

    Args:
        num_classes: K.
        weighted: MMCE_w (True) or MMCE_m (False).
        lam: weight ``>= 0`` of the MMCE term, default 2.0 for both variants.
        bandwidth: Laplacian kernel width ``> 0``, default 0.4 (Kumar et al.).
        squared: regularise with MMCE^2 instead of MMCE.
        **kwargs: shared ``CalibrationLoss`` arguments (``alpha`` weights only the CE rows).
    """

    def __init__(
        self,
        num_classes: int,
        weighted: bool = True,
        lam: float = 2.0,
        bandwidth: float = 0.4,
        squared: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        try:
            lam_f, bw = float(lam), float(bandwidth)
        except (TypeError, ValueError) as exc:
            raise InputError(f"lam and bandwidth must be numbers, got {lam!r}, {bandwidth!r}") from exc
        if not 0.0 <= lam_f < float("inf"):
            raise InputError(f"lam must be a finite number >= 0, got {lam!r}")
        if not 0.0 < bw < float("inf"):
            raise InputError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
        self.weighted = bool(weighted)
        self.lam = lam_f
        self.bandwidth = bw
        self.squared = bool(squared)

    def mmce(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The MMCE (or MMCE^2 with ``squared``) term alone, float32 scalar; same inputs as ``forward``."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            x, y, keep = self._prepare(logits, labels)
            return self._mmce_term(x, y, keep)

    def _mmce_term(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        value, defined = mmce_squared(
            F.softmax(logits, dim=1), labels, keep, weighted=self.weighted, bandwidth=self.bandwidth
        )
        term = value.clamp_min(0.0) if self.squared else value.clamp_min(_SQRT_FLOOR).sqrt()
        return torch.where(defined, term, torch.zeros_like(term))

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        return -true_class_log_prob(logits, labels)

    def batch_term(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        return self.lam * self._mmce_term(logits, labels, keep)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, weighted={self.weighted}, lam={self.lam}, "
            f"bandwidth={self.bandwidth}, squared={self.squared}"
        )
