"""Training losses of the focal-loss calibration study, and the paper's gradient analysis.

Entry points: :func:`build_loss` / :func:`available_losses` (registry), :class:`CalibrationLoss` (the
contract every loss follows, see ``docs/ARCHITECTURE.md``), the loss classes, and the analysis functions
:func:`g_factor`, :func:`p_threshold`, :func:`gamma_threshold`.
"""

from .adafocal import AdaFocalLoss, adafocal_gamma_update
from .analysis import g_factor, gamma_threshold, p_threshold
from .base import REDUCTIONS, CalibrationLoss, guarded_pow, true_class_log_prob
from .brier import BrierLoss
from .focal import (
    FLSC_531_SCHEDULE,
    FLSD_53_GAMMAS,
    FLSD_53_THRESHOLDS,
    CrossEntropyLoss,
    DualFocalLoss,
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
    flsd_gammas,
    focal_from_log_prob,
    scale_schedule,
)
from .mmce import MMCELoss, laplacian_kernel, mmce_squared
from .registry import (
    LOSSES,
    available_losses,
    build_loss,
    loss_description,
    loss_identity,
    loss_label,
    loss_options,
    register_loss,
)
from .smoothing import LabelSmoothingLoss, MarginLabelSmoothingLoss

__all__ = [
    "AdaFocalLoss",
    "BrierLoss",
    "CalibrationLoss",
    "CrossEntropyLoss",
    "DualFocalLoss",
    "FLSC_531_SCHEDULE",
    "FLSD_53_GAMMAS",
    "FLSD_53_THRESHOLDS",
    "FocalLoss",
    "LOSSES",
    "LabelSmoothingLoss",
    "MMCELoss",
    "MarginLabelSmoothingLoss",
    "REDUCTIONS",
    "SampleDependentFocalLoss",
    "ScheduledFocalLoss",
    "adafocal_gamma_update",
    "available_losses",
    "build_loss",
    "flsd_gammas",
    "focal_from_log_prob",
    "g_factor",
    "gamma_threshold",
    "guarded_pow",
    "laplacian_kernel",
    "loss_description",
    "loss_identity",
    "loss_label",
    "loss_options",
    "mmce_squared",
    "p_threshold",
    "register_loss",
    "scale_schedule",
    "true_class_log_prob",
]
