"""Evaluation of trained runs: test metrics before and after temperature scaling (:mod:`.evaluate`), OOD
scoring (:mod:`.ood`), the reports a run folder holds (:mod:`.report`, :mod:`.ood_report`), and reading runs
back for tables and figures (:mod:`.runlog`), each with the run's evaluation settings (:mod:`focalcal.eval_settings`).
Training is :mod:`focalcal.engine`; this package reads its run folders and checkpoints and never changes what
training wrote. It writes into a run folder only its own files, with the caller holding the folder's lock
(:meth:`~focalcal.engine.RunFolder.lock`): :func:`write_evaluation` writes ``report.json`` / ``report.md``,
``reliability_*.png`` and ``logits.pt``; :func:`write_ood` writes ``ood.json`` / ``ood.md`` and
``ood_roc_<score>.png``."""

from .evaluate import LoadedRun, evaluate, evaluate_run, load_run, run_logits
from .ood import score_run
from .ood_report import write_ood
from .report import main_temperature, write_evaluation
from .runlog import Reliability, RunLog, curves_of, read_reliability, read_run, read_runs, reliability_panels

__all__ = [
    "LoadedRun",
    "Reliability",
    "RunLog",
    "curves_of",
    "evaluate",
    "evaluate_run",
    "load_run",
    "main_temperature",
    "read_reliability",
    "read_run",
    "read_runs",
    "reliability_panels",
    "run_logits",
    "score_run",
    "write_evaluation",
    "write_ood",
]
