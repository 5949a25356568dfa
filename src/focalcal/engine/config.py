"""Training configuration: the paper's protocol as defaults, scaled to the epoch count.

The protocol (docs/PAPER.md, "Training protocol"): SGD with momentum 0.9 (no Nesterov), weight decay 5e-4,
batch 128, lr 0.1 divided by 10 at epochs 150 and 250 of 350, gradient-norm clipping at 2, seed 1, and
5,000 validation images held out of the official train split with a fixed split seed.

>>> cfg = TrainConfig(epochs=35)
>>> cfg.resolved_milestones()
[15, 25]
>>> TrainConfig(val_size=1.0).validate()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
focalcal.errors.ConfigError: invalid training configuration: val_size 1.0 is ambiguous: ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ConfigError
from ..validation import BIN_CLOSED
from .device import default_eval_batch

PAPER_EPOCHS = 350
PAPER_MILESTONES = (150, 250)
TS_METHODS = ("nll", "ece_grid")

#: Settings that do not change what is trained or measured: a run may be resumed with other values.
RUNTIME_KEYS = frozenset(
    {
        "device",
        "data_dir",
        "amp",
        "channels_last",
        "compile",
        "eval_batch_size",
        "dynamics_train_size",
        "dynamics_test_size",
        "dynamics_every",
    }
)


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run folder.

    Protocol keys (changing one changes what is trained): ``dataset``, ``image_size``, ``model``,
    ``model_options``, ``loss``, ``loss_options``, ``epochs``, ``batch_size``, ``lr``, ``momentum``,
    ``nesterov``, ``weight_decay``, ``milestones`` (None: the paper's 150/250 of 350 scaled to ``epochs``),
    ``lr_gamma``, ``grad_clip`` (None or 0: off), ``seed``, ``split_seed``, ``val_size`` (an int count or a
    float fraction in (0, 1) of the official train split), ``train_size``, ``test_size``, ``augment``.

    Evaluation keys: ``n_bins`` (15), ``bin_closed`` (``"left"``: bins ``[lo, hi)`` as torchmetrics, or
    ``"right"``: ``(lo, hi]`` as the authors' code), ``ts_method`` (the report's main temperature:
    ``"nll"`` or the paper's ``"ece_grid"``; both are always reported).

    Runtime keys (:data:`RUNTIME_KEYS`, free to change on resume): ``device``, ``data_dir``, ``amp`` and
    ``channels_last`` (None: chosen for the machine, see :mod:`focalcal.engine.precision`), ``compile``,
    ``eval_batch_size`` (None: :meth:`resolved_eval_batch`, 1024 on CUDA and 64 on a
    CPU), and the per-epoch training-dynamics passes: ``dynamics_train_size`` un-augmented
    train images (0: off), ``dynamics_test_size`` test images (None: the whole test split, 0: off),
    every ``dynamics_every`` epochs (and always at the last epoch).
    """

    dataset: str = "cifar10"
    data_dir: str | None = None
    image_size: int | None = None
    model: str = "resnet20"
    model_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 350
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    milestones: list[int] | None = None
    lr_gamma: float = 0.1
    grad_clip: float | None = 2.0
    seed: int = 1
    split_seed: int = 1
    val_size: int | float = 0.1
    train_size: int | None = None
    test_size: int | None = None
    augment: bool = True
    n_bins: int = 15
    bin_closed: str = "left"
    ts_method: str = "nll"
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    eval_batch_size: int | None = None
    dynamics_train_size: int = 2000
    dynamics_test_size: int | None = None
    dynamics_every: int = 1

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [max(1, round(m * self.epochs / PAPER_EPOCHS)) for m in PAPER_MILESTONES]

    def resolved_eval_batch(self, device: torch.device) -> int:
        """The evaluation batch on ``device``: ``eval_batch_size``, else the device's default (speed only)."""
        return self.eval_batch_size or default_eval_batch(device)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (e.g. a run's config with another ``data_dir``)."""
        return dataclasses.replace(self, **changes)

    def protocol_dict(self) -> dict[str, Any]:
        """The keys that define what is trained and measured (everything but :data:`RUNTIME_KEYS`)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}

    def validate(self) -> None:
        """Check values and names.

        Raises:
            ConfigError: listing every problem; DataError: an unknown dataset name.
        """
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
        if self.grad_clip is not None and self.grad_clip < 0:
            problems.append(f"grad_clip must be > 0, or 0 / null to disable it (got {self.grad_clip})")
        if self.milestones is not None and any(not 0 < int(m) < self.epochs for m in self.milestones):
            problems.append(f"milestones must lie in 1..epochs-1 = 1..{self.epochs - 1} (got {self.milestones})")
        if not 0 < self.lr_gamma <= 1:
            problems.append(f"lr_gamma must be in (0, 1] (got {self.lr_gamma})")
        if self.image_size is not None and self.image_size < 1:
            problems.append(f"image_size must be >= 1 (got {self.image_size})")
        problems += _val_size_problems(self.val_size)
        for key in ("loss_options", "model_options"):
            if not isinstance(getattr(self, key), dict):
                problems.append(f"{key} must be a mapping of option: value (got {getattr(self, key)!r})")
        if self.bin_closed not in BIN_CLOSED:
            problems.append(f"bin_closed must be one of {', '.join(BIN_CLOSED)} (got {self.bin_closed!r})")
        if self.ts_method not in TS_METHODS:
            problems.append(f"ts_method must be one of {', '.join(TS_METHODS)} (got {self.ts_method!r})")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            problems.append(
                f"eval_batch_size must be >= 1, or null for the device's default (got {self.eval_batch_size})"
            )
        if self.dynamics_every < 1:
            problems.append(f"dynamics_every must be >= 1 (got {self.dynamics_every})")
        if self.dynamics_test_size is not None and self.dynamics_test_size < 0:
            problems.append(
                f"dynamics_test_size must be >= 0, or null for the whole test split (got {self.dynamics_test_size})"
            )
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))
        self._check_names()

    def _check_names(self) -> None:
        """Unknown dataset, model or loss names fail here, before any data is loaded."""
        from ..data import DATASETS, DataError
        from ..losses import LOSSES
        from ..models import MODELS

        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        MODELS.entry(self.model)
        MODELS.convert_options(self.model, self.model_options)
        LOSSES.entry(self.loss)
        LOSSES.convert_options(self.loss, self.loss_options)

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
            "dynamics_train_size",
            "dynamics_every",
        )
        out = [
            f"{k} must be a number (got {getattr(self, k)!r})"
            for k in numeric
            if isinstance(getattr(self, k), bool) or not isinstance(getattr(self, k), (int, float))
        ]
        for k in ("eval_batch_size", "dynamics_test_size", "image_size"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                out.append(f"{k} must be a whole number, or null (got {v!r})")
        if out:
            raise ConfigError("invalid training configuration: " + "; ".join(out))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a mapping of keys (a preset, ``config.json``); unknown keys are an error listing the valid
        ones. ``dynamics_test`` (true/false), the key of runs made before ``dynamics_test_size``, is read too."""
        d = dict(d)
        if "dynamics_test" in d:  # runs written before dynamics_test_size existed
            d.setdefault("dynamics_test_size", None if d.pop("dynamics_test") else 0)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
        return cls(**d)


def _val_size_problems(v: Any) -> list[str]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return [f"val_size must be an image count or a fraction (got {v!r})"]
    if isinstance(v, float):
        if v == 1.0:
            return ["val_size 1.0 is ambiguous: write 1 for one image, or a fraction below 1 (e.g. 0.1)"]
        if not 0 < v < 1 and not (v > 1 and v.is_integer()):
            return [f"val_size as a fraction must lie in (0, 1) (got {v})"]
    elif v < 1:
        return [f"val_size must be >= 1 image (got {v})"]
    return []
