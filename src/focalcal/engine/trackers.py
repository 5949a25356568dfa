"""Send a run's per-epoch metrics where people already look: TensorBoard and Weights & Biases.

Both are optional: their packages are imported only when asked for (``--tensorboard``, ``--wandb PROJECT``),
and a missing one is a one-line error naming the package to install. A tracker receives each epoch's
log record (the same numbers as ``log.jsonl``) and, after evaluation, the test metrics and the reliability
diagrams.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import ConfigError
from .runfolder import TENSORBOARD, RunFolder, reliability_png

_SCALAR = (int, float)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, _SCALAR) and not isinstance(v, bool)}


def _report_scalars(report: dict[str, Any]) -> dict[str, float]:
    out = {}
    for stage in ("before", "after"):
        for k, v in report["test"][stage].items():
            out[f"test_{stage}_ts/{k}"] = float(v)
    out["temperature"] = float(report["temperature"][report["ts_method"]]["value"])
    return out


class TensorBoardTracker:
    """Event files in ``<run>/tensorboard`` (``torch.utils.tensorboard``; needs the ``tensorboard`` package)."""

    def __init__(self, run: RunFolder):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run / TENSORBOARD))

    def log_epoch(self, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        for k, v in _scalars(record).items():
            if k != "epoch":
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def log_evaluation(self, report: dict[str, Any], run: RunFolder) -> None:
        import numpy as np
        from PIL import Image

        for k, v in _report_scalars(report).items():
            self.writer.add_scalar(k, v, int(report["epochs_trained"]))
        for stage in ("before", "after"):
            path = run / reliability_png(stage)
            if path.is_file():
                img = np.asarray(Image.open(path).convert("RGB"))
                self.writer.add_image(f"reliability_{stage}", img, int(report["epochs_trained"]), dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run in ``project`` (set ``WANDB_MODE=offline`` to log without a network)."""

    def __init__(self, run: RunFolder, project: str, config: dict[str, Any] | None = None):
        try:
            import wandb
        except ImportError:
            raise ConfigError("--wandb needs the wandb package: pip install wandb") from None
        self.wandb = wandb
        self.run = wandb.init(project=project, dir=str(run.path), name=run.path.name, config=config, reinit=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        self.run.log(_scalars(record), step=int(record["epoch"]))

    def log_evaluation(self, report: dict[str, Any], run: RunFolder) -> None:
        data = dict(_report_scalars(report))
        for stage in ("before", "after"):
            path = run / reliability_png(stage)
            if path.is_file():
                data[f"reliability_{stage}"] = self.wandb.Image(str(path))
        self.run.log(data, step=int(report["epochs_trained"]))
        self.run.summary.update(_report_scalars(report))

    def close(self) -> None:
        self.run.finish()


def trackers_from_args(args: argparse.Namespace, run: RunFolder) -> list[Any]:
    """The trackers asked for by ``--tensorboard`` / ``--wandb PROJECT``."""
    out: list[Any] = []
    if getattr(args, "tensorboard", False):
        out.append(TensorBoardTracker(run))
    if getattr(args, "wandb", None):
        out.append(WandbTracker(run, args.wandb))
    return out
