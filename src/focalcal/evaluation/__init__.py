"""Evaluation of trained runs: test metrics before and after temperature scaling (:mod:`.evaluate`), OOD
scoring (:mod:`.ood`), the reports a run folder holds (:mod:`.report`, :mod:`.ood_report`), and reading runs
back for tables and figures (:mod:`.runlog`), each with the run's evaluation settings (:mod:`focalcal.eval_settings`).
Training is :mod:`focalcal.engine`; this package only reads its run folders and checkpoints."""

from .evaluate import LoadedRun, evaluate, evaluate_run, load_run, run_logits
from .ood import score_run
from .ood_report import write_ood
from .report import write_evaluation
from .runlog import Reliability, RunLog, read_reliability, read_run, read_runs

__all__ = [
    "LoadedRun",
    "Reliability",
    "RunLog",
    "evaluate",
    "evaluate_run",
    "load_run",
    "read_reliability",
    "read_run",
    "read_runs",
    "run_logits",
    "score_run",
    "write_evaluation",
    "write_ood",
]
