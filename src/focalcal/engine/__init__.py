"""Training engine: configuration, the training loop (:mod:`.trainer`), run folders, precision and devices,
distributed training. Reading, evaluating and reporting on a finished run is :mod:`focalcal.evaluation`."""

from .config import RUNTIME_KEYS, TrainConfig
from .precision import Precision, resolve_precision
from .runfolder import RunFolder
from .trainer import Trainer, predict_logits, prepare_data

__all__ = [
    "RUNTIME_KEYS",
    "Precision",
    "RunFolder",
    "TrainConfig",
    "Trainer",
    "predict_logits",
    "prepare_data",
    "resolve_precision",
]
