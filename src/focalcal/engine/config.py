"""Training configuration: the paper's protocol as defaults, scaled to the epoch count."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PAPER_EPOCHS = 350
PAPER_MILESTONES = (150, 250)


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run folder.

    Defaults follow the paper (FACTS.md): SGD momentum 0.9 (no Nesterov), weight decay 5e-4, batch 128,
    lr 0.1 divided by 10 at epochs 150 and 250 of 350 (scaled to ``epochs``), gradient-norm clipping at 2,
    seed 1, 5,000 validation images held out of the official train split with a fixed split seed.
    """

    dataset: str = "cifar10"
    data_dir: str | None = None
    image_size: int | None = None
    model: str = "resnet20"
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 350
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    milestones: list[int] | None = None  # None: the paper's 150/250 of 350, scaled to `epochs`
    lr_gamma: float = 0.1
    grad_clip: float | None = 2.0
    seed: int = 1
    split_seed: int = 1
    val_size: int | float = 0.1  # a fraction of the official train split (5,000 of CIFAR's 50,000) or a count
    train_size: int | None = None
    test_size: int | None = None
    augment: bool = True
    n_bins: int = 15
    device: str = "auto"
    amp: bool | None = None  # None: bfloat16 autocast where bf16 is native (CUDA; CPUs with AMX/AVX512-BF16)
    channels_last: bool | None = None  # None: on for CUDA, and on CPU with bf16 (engine.device.resolve_precision)
    compile: bool = False
    eval_batch_size: int = 1024
    dynamics_train_size: int = 2000  # fixed un-augmented train subset evaluated each epoch (0: off)
    dynamics_test: bool = True  # evaluate the test split each epoch for the training-dynamics figures

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [max(1, round(m * self.epochs / PAPER_EPOCHS)) for m in PAPER_MILESTONES]

    def validate(self) -> None:
        """Check values and names; raises ValueError listing every problem (DataError for the dataset name)."""
        self._check_types()
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.n_bins < 1:
            problems.append(f"n_bins must be >= 1 (got {self.n_bins})")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, or None/0 to disable (got {self.grad_clip})")
        if self.milestones is not None and any(not 0 < int(m) < self.epochs for m in self.milestones):
            problems.append(f"milestones must lie in 1..epochs-1 = 1..{self.epochs - 1} (got {self.milestones})")
        if not 0 < self.lr_gamma <= 1:
            problems.append(f"lr_gamma must be in (0, 1] (got {self.lr_gamma})")
        if self.image_size is not None and self.image_size < 1:
            problems.append(f"image_size must be >= 1 (got {self.image_size})")
        if not isinstance(self.loss_options, dict):
            problems.append(f"loss_options must be a mapping of option: value (got {self.loss_options!r})")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))
        self._check_names()

    def _check_names(self) -> None:
        """Unknown dataset, model or loss names fail here, before any data is loaded."""
        from ..data import DATASETS, DataError
        from ..losses import available_losses
        from ..models import available_models

        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        if self.model not in available_models():
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(available_models())}")
        if self.loss.lower() not in available_losses():
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(available_losses())}")

    def _check_types(self) -> None:
        numeric = (
            "epochs",
            "batch_size",
            "lr",
            "momentum",
            "weight_decay",
            "lr_gamma",
            "seed",
            "split_seed",
            "n_bins",
            "eval_batch_size",
            "dynamics_train_size",
        )
        out = [
            f"{k} must be a number (got {getattr(self, k)!r})"
            for k in numeric
            if isinstance(getattr(self, k), bool) or not isinstance(getattr(self, k), (int, float))
        ]
        if out:
            raise ValueError("invalid training configuration: " + "; ".join(out))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)
