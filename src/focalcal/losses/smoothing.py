"""Label smoothing (two conventions) and margin-based label smoothing (MbLS)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from .base import CalibrationLoss, true_class_log_prob

__all__ = ["LabelSmoothingLoss", "MarginLabelSmoothingLoss"]


def _nonnegative(value: object, what: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number, got {value!r}") from exc
    if not 0.0 <= out < float("inf"):
        raise InputError(f"{what} must be a finite number >= 0, got {value!r}")
    return out


class LabelSmoothingLoss(CalibrationLoss):
    """Cross-entropy against a smoothed target ``q``: ``-sum_k q_k log p_k`` (nats).

    Two conventions for the smoothing ``eps`` (``0 <= eps < 1``):

    * ``convention="paper"`` (registry ``"ls"``; Mukhoti et al. 2020, Sec. 5, "LS-0.05", following
      Szegedy et al. 2016 / Mueller et al. 2019 as used by the authors): ``q = 1 - eps`` on the true class
      and ``eps / (K - 1)`` on each other class. The true class never receives extra mass.
    * ``convention="torch"`` (registry ``"ls_torch"``): ``q = (1 - eps) * onehot + eps / K`` on every class,
      i.e. ``1 - eps + eps / K`` on the true class. Identical to
      ``F.cross_entropy(logits, labels, label_smoothing=eps)`` (without class weights).

    The same ``eps`` therefore smooths slightly more in the paper convention (``eps`` moved off the true
    class instead of ``eps * (K - 1) / K``). With ``alpha`` the row weight is ``alpha[y]`` for the whole
    smoothed term; torch's ``weight=`` instead weights each class's term separately, so ``ls_torch`` with
    ``alpha`` differs from torch's weighted label-smoothed CE.

    Args:
        num_classes: K.
        smoothing: ``eps`` in ``[0, 1)``; default 0.05 (the paper's LS-0.05). ValueError outside.
        convention: ``"paper"`` or ``"torch"``.
        **kwargs: shared ``CalibrationLoss`` arguments.
    """

    CONVENTIONS = ("paper", "torch")

    def __init__(self, num_classes: int, smoothing: float = 0.05, convention: str = "paper", **kwargs) -> None:
        super().__init__(num_classes, **kwargs)
        eps = _nonnegative(smoothing, "smoothing")
        if not eps < 1.0:
            raise InputError(f"smoothing must be in [0, 1), got {smoothing!r}")
        if convention not in self.CONVENTIONS:
            raise InputError(f"convention must be one of {self.CONVENTIONS}, got {convention!r}")
        self.smoothing = eps
        self.convention = convention

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        log_p = log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        k = self.num_classes
        eps = self.smoothing
        if self.convention == "paper":
            other = eps / (k - 1)
            true = 1.0 - eps
        else:
            other = eps / k
            true = 1.0 - eps + eps / k
        # -sum_k q_k log p_k with q_k = other everywhere except true on the label.
        return -(true - other) * log_p - other * log_probs.sum(dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, smoothing={self.smoothing}, convention={self.convention!r}"


class MarginLabelSmoothingLoss(CalibrationLoss):
    """Margin-based label smoothing (MbLS): ``CE + lam * sum_j relu(max_k z_k - z_j - margin)``.

    Registry name ``"mbls"``. ``z`` are the raw logits; the penalty is a hinge on logit *distances* to the
    largest logit, active only where a distance exceeds ``margin``. Units: nats + lam * logit units.

    Args:
        num_classes: K.
        margin: ``m >= 0``, default 10 (paper).
        lam: penalty weight ``>= 0``, default 0.1 (paper).
        class_reduction: ``"sum"`` (default; the sum over classes of the paper's equation) or ``"mean"``
            (divide by K; the authors' code takes ``.mean()`` over the ``[N, K]`` penalty matrix, which is
            the paper's penalty times ``1 / K``).
        **kwargs: shared ``CalibrationLoss`` arguments.

    Source: Liu, Ben Ayed, Galdran, Dolz, "The Devil is in the Margin: Margin-based Label Smoothing for
    Network Calibration", CVPR 2022, Sec. 3 (margin-based penalty on logit distances).
    """

    CLASS_REDUCTIONS = ("sum", "mean")

    def __init__(
        self, num_classes: int, margin: float = 10.0, lam: float = 0.1, class_reduction: str = "sum", **kwargs
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self.margin = _nonnegative(margin, "margin")
        self.lam = _nonnegative(lam, "lam")
        if class_reduction not in self.CLASS_REDUCTIONS:
            raise InputError(f"class_reduction must be one of {self.CLASS_REDUCTIONS}, got {class_reduction!r}")
        self.class_reduction = class_reduction

    def per_sample_loss(self, logits: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
        ce = -true_class_log_prob(logits, labels)
        distance = logits.amax(dim=1, keepdim=True) - logits
        hinge = F.relu(distance - self.margin)
        penalty = hinge.sum(dim=1) if self.class_reduction == "sum" else hinge.mean(dim=1)
        return ce + self.lam * penalty

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}, lam={self.lam}, class_reduction={self.class_reduction!r}"
