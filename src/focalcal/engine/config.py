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
import math
from dataclasses import dataclass, field
from typing import Any

from ..defaults import BIN_CLOSED, N_BINS, TS_METHOD
from ..errors import ConfigError, FocalcalError
from ..validation import eval_settings_problems

PAPER_EPOCHS = 350
PAPER_MILESTONES = (150, 250)
OPTIMIZERS = ("sgd", "adam", "adagrad")
LR_SCHEDULES = ("multistep", "constant")
SELECT_EPOCHS = ("last", "best_val_acc")
LOSS_NORMALIZATIONS = ("mean", "per_sample")
#: The keys of one ``param_groups`` entry.
GROUP_KEYS = ("params", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "betas", "eps")

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
    ``lr_gamma``, ``grad_clip`` (None or 0: off), ``seed``, ``split_seed`` (the validation hold-out and any
    subset; 20 Newsgroups: the shuffle of its whole train / validation / test split, 1 the paper's),
    ``val_size`` (an int count or a float fraction in (0, 1) of the official train split), ``train_size``,
    ``test_size``, ``augment``.

    Protocol keys for other data and protocols (the defaults keep the image protocol above):

    - ``data_options``: the data set's own options (its registry entry's, e.g. a text data set's ``fit_on``:
      ``"train"`` or ``"all"``, what its vocabulary / tokenizer is fitted on); ``embeddings``: the word vectors of
      a text data set (a GloVe text file, or a package name; None: :data:`focalcal.data.DEFAULT_WORD_VECTORS`,
      GloVe 6B 50-d). Text data sets have a fixed validation split: ``val_size`` left at its default keeps it
      whole, a count takes a seeded subset of it; ``train_size`` / ``test_size`` take seeded subsets.
    - ``optimizer``: ``"sgd"`` (``momentum``, ``nesterov``), ``"adam"`` (``betas``, ``eps``) or ``"adagrad"``
      (``eps``); None for ``betas`` / ``eps`` means torch's defaults. ``weight_decay`` is each optimizer's own
      (L2 added to the gradient).
    - ``param_groups``: parameters trained with other settings, a list of mappings ``{"params": PREFIX,
      "optimizer": ..., "lr": ..., "weight_decay": ..., "momentum": ..., "nesterov": ..., "betas": ...,
      "eps": ...}``: the parameters whose name (``model.named_parameters()``) starts with ``PREFIX`` get their
      own optimizer (unset keys: the run's values; e.g. SST's fine-tuned word vectors with plain SGD at lr 0.1
      while the rest uses Adagrad: ``[{"params": "embedding", "optimizer": "sgd", "lr": 0.1, "momentum": 0,
      "weight_decay": 0}]``); each prefix must match a parameter, and no parameter two groups.
    - ``lr_schedule``: ``"multistep"`` (``milestones``, ``lr_gamma``) or ``"constant"`` (no schedule).
    - ``select_epoch``: ``"last"`` or ``"best_val_acc"`` (``final.pt`` holds the weights of the epoch with the
      best validation accuracy, the first of equals; the report names the epoch), as the paper's text runs.
    - ``loss_normalization``: ``"mean"`` (the loss's own reduction over a batch's targets) or ``"per_sample"``
      (the loss summed over a batch's targets and divided by its samples: the SST protocol, each tree's loss
      summed over its nodes, averaged over the trees of the batch; a batch term such as MMCE counts once per
      tree, so its weight is relative to one tree's loss: :meth:`~focalcal.losses.base.CalibrationLoss.sum_per_sample`;
      the loss's ``reduction`` must stay unset).

    Evaluation keys (defaults in :mod:`focalcal.defaults`): ``n_bins`` (15), ``bin_closed`` (``"left"``: bins
    ``[lo, hi)`` as torchmetrics, or ``"right"``: ``(lo, hi]`` as the authors' code), ``ts_method`` (the report's
    main temperature: ``"nll"`` or the paper's ``"ece_grid"``; both are always reported). Evaluation reads them
    through :func:`focalcal.eval_settings.resolve_settings`.

    Runtime keys (:data:`RUNTIME_KEYS`, free to change on resume): ``device``, ``data_dir``, ``amp`` and
    ``channels_last`` (None: chosen for the machine, see :mod:`focalcal.engine.precision`), ``compile``,
    ``eval_batch_size`` (None: the device's default, 1024 on CUDA and 64 on a CPU; see
    :meth:`focalcal.eval_settings.EvalSettings.batch`), and the per-epoch training-dynamics passes:
    ``dynamics_train_size`` un-augmented train images (0: off), ``dynamics_test_size`` test images (None: the
    whole test split, 0: off), every ``dynamics_every`` epochs (and always at the last epoch).
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
    n_bins: int = N_BINS
    bin_closed: str = BIN_CLOSED
    ts_method: str = TS_METHOD
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    eval_batch_size: int | None = None
    dynamics_train_size: int = 2000
    dynamics_test_size: int | None = None
    dynamics_every: int = 1
    data_options: dict[str, Any] = field(default_factory=dict)
    embeddings: str | None = None
    optimizer: str = "sgd"
    betas: list[float] | None = None
    eps: float | None = None
    param_groups: list[dict[str, Any]] = field(default_factory=list)
    lr_schedule: str = "multistep"
    select_epoch: str = "last"
    loss_normalization: str = "mean"

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [max(1, round(m * self.epochs / PAPER_EPOCHS)) for m in PAPER_MILESTONES]

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (e.g. a run's config with another ``data_dir``)."""
        return dataclasses.replace(self, **changes)

    def protocol_dict(self) -> dict[str, Any]:
        """The keys that define what is trained and measured (everything but :data:`RUNTIME_KEYS`), with the
        loss, model and data options typed by their registries' converters (a run made before options were
        stored typed, with ``{"gamma": "2"}`` or ``{"maxlen": "1000"}`` in its ``config.json``, compares equal to
        ``{"gamma": 2.0}`` / ``{"maxlen": 1000}``)."""
        out = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}
        out.update(self.typed_options())
        return out

    def typed_options(self) -> dict[str, dict[str, Any]]:
        """``{"loss_options": ..., "model_options": ..., "data_options": ...}`` converted by the loss, model and
        data set registries (``"2"`` -> 2.0), as :meth:`validate` stores them; options that cannot be converted
        (an unknown name or option) are returned as they are, for :meth:`validate` to report."""
        typed = {}
        for key, registry, name in self._option_registries():
            options = getattr(self, key)
            try:
                typed[key] = registry.convert_options(name, options)
            except (FocalcalError, AttributeError, TypeError):  # not a mapping, or an unknown name / option
                typed[key] = options
        return typed

    def _option_registries(self) -> list[tuple[str, Any, str]]:
        """``(options key, registry, name)`` of each option mapping: the model's, the loss's, the data set's."""
        from ..data import DATASETS
        from ..losses import LOSSES
        from ..models import MODELS

        return [
            ("model_options", MODELS, self.model),
            ("loss_options", LOSSES, self.loss),
            ("data_options", DATASETS, self.dataset),
        ]

    def validate(self) -> None:
        """Check values and names, and store the loss and model options converted (typed) by their registries.

        Rates and strengths must be finite: ``lr`` > 0, ``weight_decay`` >= 0, ``momentum`` in [0, 1),
        ``grad_clip`` >= 0 (0 / null: off), ``lr_gamma`` in (0, 1].

        Raises:
            ConfigError: listing every problem; DataError: an unknown dataset name; InputError: an unknown
            model or loss name or option, or an option value its converter rejects.
        """
        self._check_types()
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a finite number > 0 (got {self.lr})")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be a finite number >= 0 (got {self.weight_decay})")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            problems.append(f"momentum must lie in [0, 1) (got {self.momentum})")
        elif self.nesterov and self.momentum == 0:
            problems.append("nesterov needs momentum > 0 (got momentum 0)")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            problems.append(f"grad_clip must be a finite number > 0, or 0 / null to disable it (got {self.grad_clip})")
        if self.milestones is not None and any(not 0 < int(m) < self.epochs for m in self.milestones):
            problems.append(f"milestones must lie in 1..epochs-1 = 1..{self.epochs - 1} (got {self.milestones})")
        if not (math.isfinite(self.lr_gamma) and 0 < self.lr_gamma <= 1):
            problems.append(f"lr_gamma must be in (0, 1] (got {self.lr_gamma})")
        if self.image_size is not None and self.image_size < 1:
            problems.append(f"image_size must be >= 1 (got {self.image_size})")
        problems += _val_size_problems(self.val_size)
        for key in ("loss_options", "model_options"):
            if not isinstance(getattr(self, key), dict):
                problems.append(f"{key} must be a mapping of option: value (got {getattr(self, key)!r})")
        problems += eval_settings_problems(  # the evaluation keys: one check, shared with evaluation's resolver
            n_bins=self.n_bins,
            bin_closed=self.bin_closed,
            ts_method=self.ts_method,
            eval_batch_size=self.eval_batch_size,
        )
        if self.dynamics_every < 1:
            problems.append(f"dynamics_every must be >= 1 (got {self.dynamics_every})")
        if self.dynamics_test_size is not None and self.dynamics_test_size < 0:
            problems.append(
                f"dynamics_test_size must be >= 0, or null for the whole test split (got {self.dynamics_test_size})"
            )
        problems += self._protocol_problems()
        if problems:
            raise ConfigError("invalid training configuration: " + "; ".join(problems))
        self._check_names()

    def _check_names(self) -> None:
        """Unknown dataset, model or loss names fail here, before any data is loaded; the model, loss and data
        options are stored converted by their registries (``--loss-opt gamma=2`` keeps ``2.0``, not ``"2"``;
        ``--data-opt maxlen=1000`` keeps ``1000``), so ``config.json``, labels and tables see typed values."""
        from ..data import DATASETS, DataError
        from ..models import MODELS

        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        for key, registry, name in self._option_registries():  # the converters :meth:`typed_options` uses
            registry.entry(name)
            setattr(self, key, registry.convert_options(name, getattr(self, key)))
        gives = DATASETS.entry(self.dataset).meta.get("inputs", "images")
        takes = MODELS.entry(self.model).meta.get("inputs", "images")
        if gives != takes:
            raise ConfigError(
                f"model {self.model!r} takes {takes} but dataset {self.dataset!r} gives {gives}; choose a model "
                f"for {gives} (see `focalcal list`)"
            )
        if self.embeddings is not None and gives == "images":
            raise ConfigError(f"embeddings (word vectors) apply to text data sets, not {self.dataset!r}; unset it")

    def _protocol_problems(self) -> list[str]:
        """Problems of the optimiser, schedule, epoch selection and loss normalisation keys."""
        out = []
        checks = {
            "optimizer": OPTIMIZERS,
            "lr_schedule": LR_SCHEDULES,
            "select_epoch": SELECT_EPOCHS,
            "loss_normalization": LOSS_NORMALIZATIONS,
        }
        for key, valid in checks.items():
            if getattr(self, key) not in valid:
                out.append(f"{key} must be one of {', '.join(valid)} (got {getattr(self, key)!r})")
        out += _optimizer_problems("", self.optimizer, self.betas, self.eps, self.nesterov, self.momentum)
        if self.lr_schedule == "constant" and self.milestones:
            out.append(f"milestones {self.milestones} need lr_schedule multistep (got constant)")
        if self.loss_normalization == "per_sample" and isinstance(self.loss_options, dict):
            if self.loss_options.get("reduction", "sum") != "sum":
                out.append(
                    "loss_normalization per_sample sums the loss over each batch's targets: leave the loss's "
                    f"reduction unset (got {self.loss_options['reduction']!r})"
                )
        for key in ("data_options",):
            if not isinstance(getattr(self, key), dict):
                out.append(f"{key} must be a mapping of option: value (got {getattr(self, key)!r})")
        if self.embeddings is not None and not isinstance(self.embeddings, str):
            out.append(f"embeddings must be a path or package name, or null (got {self.embeddings!r})")
        if not isinstance(self.param_groups, list):
            out.append(f"param_groups must be a list of mappings (got {self.param_groups!r})")
            return out
        prefixes = []
        for i, group in enumerate(self.param_groups):
            where = f"param_groups[{i}]"
            if not isinstance(group, dict):
                out.append(f"{where} must be a mapping (got {group!r})")
                continue
            unknown = sorted(set(group) - set(GROUP_KEYS))
            if unknown:
                out.append(f"{where} has unknown keys {unknown}; valid keys: {', '.join(GROUP_KEYS)}")
            prefix = group.get("params")
            if not isinstance(prefix, str) or not prefix:
                out.append(f"{where}.params must name a parameter prefix, e.g. 'embedding' (got {prefix!r})")
            elif any(prefix.startswith(p) or p.startswith(prefix) for p in prefixes):
                out.append(f"{where}.params {prefix!r} overlaps another group's; each parameter has one group")
            else:
                prefixes.append(prefix)
            opt = group.get("optimizer", self.optimizer)
            if opt not in OPTIMIZERS:
                out.append(f"{where}.optimizer must be one of {', '.join(OPTIMIZERS)} (got {opt!r})")
                continue
            for key, lo, hi in (("lr", 0.0, None), ("weight_decay", 0.0, None), ("momentum", 0.0, 1.0)):
                v = group.get(key)
                if v is None:
                    continue
                bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                if bad or v < lo or (key == "lr" and v == 0) or (hi is not None and v >= hi):
                    rng = "> 0" if key == "lr" else (">= 0" if hi is None else f"in [{lo:g}, {hi:g})")
                    out.append(f"{where}.{key} must be a finite number {rng} (got {v!r})")
            out += _optimizer_problems(
                where + ".",
                opt,
                group.get("betas"),
                group.get("eps"),
                group.get("nesterov", False),
                group.get("momentum"),
            )
        return out

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
        if self.grad_clip is not None and (
            isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float))
        ):
            out.append(f"grad_clip must be a number, or null to disable it (got {self.grad_clip!r})")
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


def _optimizer_problems(where: str, optimizer: str, betas: Any, eps: Any, nesterov: Any, momentum: Any) -> list[str]:
    """Settings that do not belong to ``optimizer`` (``betas`` are Adam's, ``eps`` Adam's and Adagrad's,
    ``nesterov`` SGD's) or are out of range."""
    out = []
    if betas is not None:
        if optimizer != "adam":
            out.append(f"{where}betas apply to adam only (optimizer {optimizer})")
        elif (
            not isinstance(betas, (list, tuple))
            or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
        ):
            out.append(f"{where}betas must be two numbers in [0, 1), e.g. [0.9, 0.999] (got {betas!r})")
    if eps is not None:
        if optimizer == "sgd":
            out.append(f"{where}eps applies to adam and adagrad only (optimizer sgd)")
        elif isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
            out.append(f"{where}eps must be a finite number > 0 (got {eps!r})")
    if nesterov and optimizer != "sgd":
        out.append(f"{where}nesterov applies to sgd only (optimizer {optimizer})")
    if momentum and optimizer != "sgd" and where:
        out.append(f"{where}momentum applies to sgd only (optimizer {optimizer})")
    return out
