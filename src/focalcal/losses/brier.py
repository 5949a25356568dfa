"""Brier score as a training loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import CalibrationLoss

__all__ = ["BrierLoss"]


class BrierLoss(CalibrationLoss):
    """Multi-class Brier score ``sum_k (onehot(y)_k - softmax(logits)_k) ** 2`` per sample.

    Registry name ``"brier"``. Each per-sample value lies in ``[0, 2]``: 0 for a one-hot prediction of the
    true class, 2 for a one-hot prediction of a wrong class. Unlike the authors' code (which divides the
    Brier sum by N while summing the other losses over the batch), the reduction is the same as for every
    other loss here (default: mean over kept rows). See ``CalibrationLoss`` for the shared arguments.

    Source: Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather Review
    1950; used as a baseline in Mukhoti et al. 2020, Sec. 5.
    """

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        probs = F.softmax(logits, dim=1)
        onehot = F.one_hot(labels, self.num_classes).to(probs.dtype)
        return (onehot - probs).square().sum(dim=1)
