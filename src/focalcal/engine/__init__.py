"""Training engine: configuration, the training loop, run folders, evaluation, OOD scoring and reports."""

from .config import RUNTIME_KEYS, TrainConfig
from .evaluate import LoadedRun, evaluate, evaluate_run, load_run, run_logits
from .ood import score_run
from .ood_report import write_ood
from .precision import Precision, resolve_precision
from .report import write_evaluation
from .runfolder import RunFolder
from .runlog import Reliability, RunLog, read_reliability, read_run, read_runs
from .trainer import Trainer, predict_logits, prepare_data

__all__ = [
    "RUNTIME_KEYS",
    "LoadedRun",
    "Precision",
    "Reliability",
    "RunFolder",
    "RunLog",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "evaluate_run",
    "load_run",
    "predict_logits",
    "prepare_data",
    "read_reliability",
    "read_run",
    "read_runs",
    "resolve_precision",
    "run_logits",
    "score_run",
    "write_evaluation",
    "write_ood",
]
