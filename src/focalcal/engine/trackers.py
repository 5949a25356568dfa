"""Send a run's per-epoch metrics where people already look: TensorBoard and Weights & Biases.

Both are optional: their packages are imported only when asked for (``--tensorboard``, ``--wandb PROJECT``),
and a missing one is a one-line error naming the package to install. A tracker receives each epoch's
log record (the same numbers as ``log.jsonl``) and, after evaluation, the test metrics as plain numbers (the
caller reads them from the report: :func:`focalcal.evaluation.report.tracker_scalars`) and the reliability
diagrams.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .runfolder import TENSORBOARD, RunFolder, reliability_png

_SCALAR = (int, float)


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, _SCALAR) and not isinstance(v, bool)}


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

    def log_evaluation(self, scalars: Mapping[str, float], step: int, run: RunFolder) -> None:
        """Log the evaluation's ``scalars`` (name -> number) at epoch ``step``, with the run's reliability
        diagrams when they are there."""
        import numpy as np
        from PIL import Image

        for k, v in scalars.items():
            self.writer.add_scalar(k, float(v), step)
        for stage in ("before", "after"):
            path = run / reliability_png(stage)
            if path.is_file():
                img = np.asarray(Image.open(path).convert("RGB"))
                self.writer.add_image(f"reliability_{stage}", img, step, dataformats="HWC")
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

    def log_evaluation(self, scalars: Mapping[str, float], step: int, run: RunFolder) -> None:
        """As :meth:`TensorBoardTracker.log_evaluation`; the scalars also go to the run's summary."""
        data: dict[str, Any] = {k: float(v) for k, v in scalars.items()}
        summary = dict(data)
        for stage in ("before", "after"):
            path = run / reliability_png(stage)
            if path.is_file():
                data[f"reliability_{stage}"] = self.wandb.Image(str(path))
        self.run.log(data, step=step)
        self.run.summary.update(summary)

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
