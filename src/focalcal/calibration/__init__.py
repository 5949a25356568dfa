"""Post-hoc calibration (fitted on validation logits, applied to any logits).

One interface for all: :class:`Calibrator` (``fit(logits, labels) -> self``, ``transform(logits) ->
calibrated logits``, JSON-able ``state_dict()`` / ``from_state_dict()``) and a registry
(:func:`build_calibrator`, :func:`available_calibrators`):

=============  ============================================================================
name           method
=============  ============================================================================
identity       no calibration
temperature    temperature scaling (Guo et al. 2017): NLL-optimal or the paper's ECE grid
vector         vector scaling (Guo et al. 2017)
matrix         matrix scaling (Guo et al. 2017), optional ODIR regularisation
dirichlet      Dirichlet calibration with ODIR (Kull et al. 2019)
histogram      histogram binning, one-vs-rest (Zadrozny & Elkan 2001)
isotonic       isotonic regression, one-vs-rest (Zadrozny & Elkan 2002), via scikit-learn
=============  ============================================================================
"""

from .base import Calibrator, Identity
from .binning import HistogramBinning, IsotonicCalibration
from .matrix import DirichletCalibration, MatrixScaling, VectorScaling
from .registry import (
    CALIBRATORS,
    available_calibrators,
    build_calibrator,
    calibrator_class,
    calibrator_label,
    calibrator_options,
    register_calibrator,
)
from .temperature import PAPER_GRID, TemperatureScaling

__all__ = [
    "CALIBRATORS",
    "PAPER_GRID",
    "Calibrator",
    "DirichletCalibration",
    "HistogramBinning",
    "Identity",
    "IsotonicCalibration",
    "MatrixScaling",
    "TemperatureScaling",
    "VectorScaling",
    "available_calibrators",
    "build_calibrator",
    "calibrator_class",
    "calibrator_label",
    "calibrator_options",
    "register_calibrator",
]
