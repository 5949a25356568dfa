"""Calibration metrics (Mukhoti et al., NeurIPS 2020, Sec. 5): ECE, AdaECE, classwise-ECE, MCE, NLL, Brier,
error, their L2/debiased/smooth variants, reliability-bin statistics, bootstrap intervals and a streaming
accumulator.

Every metric takes keyword-only ``logits=`` or ``probs=`` (exactly one) and ``labels=``, accepts torch
tensors or numpy arrays, and returns a Python float as a fraction (NLL in nats).
"""

from .binning import BinStats, reliability_bins
from .bootstrap import BootstrapResult, bootstrap_ci
from .calibration import (
    SUMMARY_KEYS,
    accuracy,
    adaptive_ece,
    brier_score,
    calibration_error,
    calibration_summary,
    calibration_summary_and_bins,
    classwise_ece,
    ece,
    error_rate,
    mce,
    nll,
)
from .intervals import seed_interval
from .ood import SCORES as OOD_SCORES
from .ood import detection_metrics, energy_score, entropy_score, msp_score, ood_metrics, ood_roc_curve, ood_scores
from .smooth import smooth_ece
from .streaming import CalibrationAccumulator

__all__ = [
    "OOD_SCORES",
    "detection_metrics",
    "energy_score",
    "entropy_score",
    "msp_score",
    "ood_metrics",
    "ood_roc_curve",
    "ood_scores",
    "SUMMARY_KEYS",
    "BinStats",
    "BootstrapResult",
    "CalibrationAccumulator",
    "accuracy",
    "adaptive_ece",
    "bootstrap_ci",
    "brier_score",
    "calibration_error",
    "calibration_summary",
    "calibration_summary_and_bins",
    "classwise_ece",
    "ece",
    "error_rate",
    "mce",
    "nll",
    "reliability_bins",
    "seed_interval",
    "smooth_ece",
]
