"""focalcal: calibrated deep classifiers.

Implements and extends Mukhoti et al., "Calibrating Deep Neural Networks using Focal Loss" (NeurIPS 2020):
the focal-loss family and other calibration losses (:mod:`focalcal.losses`), calibration metrics
(:mod:`focalcal.metrics`), post-hoc calibration such as temperature scaling (:mod:`focalcal.calibration`),
CIFAR/image-folder data (:mod:`focalcal.data`), a model registry (:mod:`focalcal.models`), a fast training
engine (:mod:`focalcal.engine`), plots (:mod:`focalcal.plots`) and the ``focalcal`` command (:mod:`focalcal.cli`).
"""

__version__ = "0.1.0"
