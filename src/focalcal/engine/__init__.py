"""Training engine: configuration, the training loop, checkpoints, evaluation and reports."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluate import LoadedRun, evaluate, evaluate_run, load_run, run_logits
from .ood import score_run, write_ood
from .report import write_evaluation
from .runlog import Reliability, RunLog, loss_label, read_reliability, read_run, read_runs
from .trainer import RunExistsError, Trainer, predict_logits, prepare_data

__all__ = [
    "LoadedRun",
    "Reliability",
    "RunExistsError",
    "RunLog",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "evaluate_run",
    "load_checkpoint",
    "load_run",
    "loss_label",
    "predict_logits",
    "prepare_data",
    "read_reliability",
    "read_run",
    "read_runs",
    "run_logits",
    "save_checkpoint",
    "score_run",
    "write_evaluation",
    "write_ood",
]
