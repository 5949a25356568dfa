"""The evaluation settings' named defaults and choices: the one place their values are written.

Every signature, configuration default and command-line choice list reads them from here (metrics,
calibrators, :class:`~focalcal.engine.TrainConfig`, the ``focalcal`` commands), so the paper's 15 bins and
the bin rule are never written twice. This module imports nothing of focalcal, so any layer may import it.

>>> N_BINS, BIN_CLOSED, TS_METHOD
(15, 'left', 'nll')
"""

from __future__ import annotations

#: Calibration bins of ECE, AdaECE, classwise-ECE, MCE and the reliability diagrams (the paper's 15).
N_BINS = 15
#: Which edge an equal-width bin includes: ``"left"`` = ``[lo, hi)`` (torchmetrics) or ``"right"`` =
#: ``(lo, hi]`` (the paper authors' code). The outermost bins are closed on both sides.
BIN_CLOSED_CHOICES = ("left", "right")
#: The default bin rule: ``[lo, hi)``, as torchmetrics.
BIN_CLOSED = "left"
#: Temperature-scaling fits: ``"nll"`` (minimise validation NLL over log T) or ``"ece_grid"`` (the paper's
#: grid T = 0.1, 0.2, ..., 10 by validation ECE).
TS_METHODS = ("nll", "ece_grid")
#: The default temperature fit (a run's main temperature).
TS_METHOD = "nll"
