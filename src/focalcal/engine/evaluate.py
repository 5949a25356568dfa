"""Evaluate a trained run on the test split, before and after temperature scaling fitted on validation.

The temperature is fitted on the validation split only; the test split is never used to tune anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..calibration import TemperatureScaling
from ..data import DataSplits, DeviceLoader
from ..metrics import calibration_summary, reliability_bins
from ..models import build_model
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .device import resolve_device
from .trainer import CHECKPOINT, FINAL, predict_logits, prepare_data


@dataclass
class LoadedRun:
    """A trained model restored from a run folder, with the normalisation it was trained with."""

    config: TrainConfig
    model: torch.nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    epoch: int
    device: torch.device
    precision: dict[str, bool] | None = None  # training's {"amp", "channels_last"} (None: older runs)


def load_run(run_dir: str | Path, *, device: str = "auto") -> LoadedRun:
    """Restore ``final.pt`` (or, for an unfinished run, ``checkpoints/last.pt``) from ``run_dir``.

    Raises:
        FileNotFoundError: the folder holds no checkpoint (the message says how to make one).
    """
    run_dir = Path(run_dir)
    path = run_dir / FINAL if (run_dir / FINAL).exists() else run_dir / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} holds no trained run (no {FINAL} or {CHECKPOINT}); train one with "
            "`focalcal train --out DIR` first"
        )
    dev = resolve_device(device)
    state = load_checkpoint(path, map_location=dev)
    config = TrainConfig.from_dict(state["config"])
    model = build_model(config.model, len(state["classes"])).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    return LoadedRun(
        config,
        model,
        tuple(state["mean"]),
        tuple(state["std"]),
        list(state["classes"]),
        int(state["epoch"]),
        dev,
        state.get("precision"),
    )


def run_logits(run: LoadedRun, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``[N, K]`` (float32, CPU) of the run's model on uint8 ``images``, normalised as in training."""
    loader = DeviceLoader(images, labels, batch_size=batch_size, mean=run.mean, std=run.std, device=run.device)
    return predict_logits(run.model, loader)  # float32: metrics never see bf16-rounded logits


def evaluate(
    run: LoadedRun,
    data: DataSplits,
    *,
    n_bins: int = 15,
    ts_method: str = "nll",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute the evaluation numbers.

    Returns:
        ``(report, arrays)``: ``report`` is JSON-able (all metrics as fractions; see ``report.json``),
        ``arrays`` holds the logits and ``BinStats`` for plotting.
    """
    val_logits = run_logits(run, data.val_images, data.val_labels)
    test_logits = run_logits(run, data.test_images, data.test_labels)
    val_y, test_y = data.val_labels, data.test_labels

    methods = [ts_method] + [m for m in ("nll", "ece_grid") if m != ts_method]
    scalers = {m: TemperatureScaling(method=m, n_bins=n_bins).fit(val_logits, val_y) for m in methods}
    main = scalers[ts_method]

    def summary(logits):
        return calibration_summary(logits=logits, labels=test_y, n_bins=n_bins)

    report: dict[str, Any] = {
        "dataset": run.config.dataset,
        "model": run.config.model,
        "loss": run.config.loss,
        "loss_options": run.config.loss_options,
        "epochs_trained": run.epoch,
        "training_precision": run.precision,  # evaluation itself is always float32
        "n_bins": n_bins,
        "n_train": int(data.train_labels.shape[0]),
        "n_val": int(val_y.shape[0]),
        "n_test": int(test_y.shape[0]),
        "units": "fractions (error, ece, adaptive_ece, classwise_ece, mce, brier); nll in nats",
        "temperature": {
            m: {
                "value": s.temperature,
                **{k: getattr(s, k) for k in ("converged", "at_bound") if hasattr(s, k)},
            }
            for m, s in scalers.items()
        },
        "ts_method": ts_method,
        "test": {"before": summary(test_logits), "after": summary(main.transform(test_logits))},
        "test_after_by_method": {m: summary(s.transform(test_logits)) for m, s in scalers.items()},
        "val": {
            "before": calibration_summary(logits=val_logits, labels=val_y, n_bins=n_bins),
            "after": calibration_summary(logits=main.transform(val_logits), labels=val_y, n_bins=n_bins),
        },
    }
    arrays = {
        "val_logits": val_logits,
        "val_labels": val_y,
        "test_logits": test_logits,
        "test_labels": test_y,
        "temperature": main.temperature,
        "bins_before": reliability_bins(logits=test_logits, labels=test_y, n_bins=n_bins),
        "bins_after": reliability_bins(logits=main.transform(test_logits), labels=test_y, n_bins=n_bins),
    }
    return report, arrays


def evaluate_run(
    run_dir: str | Path,
    *,
    n_bins: int | None = None,
    ts_method: str = "nll",
    data_dir: str | None = None,
    device: str = "auto",
    data: DataSplits | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a run and evaluate it (see :func:`evaluate`); ``data_dir`` overrides the run's data location."""
    run = load_run(run_dir, device=device)
    if data is None:
        cfg = run.config
        if data_dir is not None:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "data_dir": data_dir})
        data = prepare_data(cfg)
    return evaluate(run, data, n_bins=n_bins or run.config.n_bins, ts_method=ts_method)
