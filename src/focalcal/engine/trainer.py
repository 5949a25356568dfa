"""The training loop: the paper's protocol on uint8 data that lives on the training device.

Each epoch: set the loss's epoch (scheduled losses), train with SGD (+ optional gradient clipping), step the
lr schedule *after* the optimiser (the original code stepped it before), evaluate the validation split
(NLL, ECE, accuracy) and, every ``dynamics_every`` epochs, the training-dynamics statistics, then append
the epoch's record to the log and write ``checkpoints/last.pt`` atomically. Under ``torchrun`` (see
:mod:`.distributed`) every rank trains on its shard with DistributedDataParallel, evaluation passes are
sharded across ranks and gathered (every sample exactly once), and only rank 0 writes files.
``resume=True`` continues from ``last.pt``; shuffling, augmentation and the global RNG (dropout) are seeded
per epoch, so a resumed run sees the same batches and draws as an uninterrupted one. The data's modality
(:class:`~focalcal.data.Modality`) makes the batch sources (images, token sequences, trees) and supplies the
model options the data owns (word vectors); with ``select_epoch: best_val_acc`` ``last.pt`` also keeps the best
validation epoch's weights, which ``final.pt`` then holds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import BatchSource, DataSplits, prepare_splits
from ..errors import (
    CheckpointError,
    ConfigError,
    DiskFullError,
    ResumeMismatchError,
    RunExistsError,
    RunFolderError,
    TrainingDiverged,
)
from ..eval_settings import resolve_settings
from ..losses import build_loss
from ..models import build_model, last_linear
from .config import TrainConfig
from .device import autocast, exact_float32, resolve_device
from .distributed import (
    DistInfo,
    all_ranks_true,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    gather_rows,
    init_from_env,
)
from .dynamics import split_nll_entropy
from .optim import Optimizers, Schedulers
from .precision import eval_channels_last, resolve_precision
from .provenance import session_record
from .runfolder import CHECKPOINT, CONFIG, FINAL, RunFolder

__all__ = ["Trainer", "predict_logits", "prepare_data", "start_mode", "RunExistsError", "TrainingDiverged"]


def prepare_data(config: TrainConfig, *, download: bool = False, word_vectors: bool = True) -> DataSplits:
    """Load the configured dataset and make the train / validation / test splits, through the data set
    registry (:func:`focalcal.data.prepare_splits`); ``word_vectors=False`` skips reading a text data set's
    word vectors (evaluation rebuilds the model from its checkpoint)."""
    return prepare_splits(config, download=download, word_vectors=word_vectors)


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module, loader: BatchSource, *, amp: bool = False, dist: DistInfo | None = None
) -> torch.Tensor:
    """Logits ``[N, K]`` float32 on the CPU, in loader order, with the model in eval mode.

    ``amp=False`` (the default) computes in full float32, with CUDA's TF32 off; ``amp=True`` runs the model
    under bfloat16 autocast (the engine never does so for logits that feed metrics). With ``dist`` of
    several processes, each rank computes its contiguous shard of the loader's samples and the shards are
    gathered, so every rank returns all ``N`` rows, each exactly once (never padded or duplicated).
    """
    was_training = model.training
    model.eval()
    outs = []
    with exact_float32(loader.device) if not amp else contextlib.nullcontext():
        for x, _ in loader.epoch(0, shard=dist):
            with autocast(loader.device, amp):
                outs.append(model(x).float())
    model.train(was_training)
    local = torch.cat(outs) if outs else torch.empty(0, 0, device=loader.device)
    if dist is not None and dist.enabled:
        return gather_rows(local, dist).cpu()
    return local.cpu()


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The global RNG's seed for one training epoch of one rank (distinct from the batch order's
    ``seed * 100_003 + epoch``, so the two streams are not the same draws)."""
    return ((seed * 100_003 + epoch) * 1_009 + rank) * 7 + 3


def start_mode(run: RunFolder, config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> str:
    """How training into ``run`` starts, checked before anything is written or removed (reads only).

    Returns:
        ``"resume"``: continue from ``checkpoints/last.pt`` (``resume``); ``"restart"``: remove the run's own
        files (:meth:`RunFolder.clear`) and start at epoch 1 (``overwrite``, or ``resume`` of a run that
        finished no epoch, with the same configuration); ``"new"``: start at epoch 1, removing nothing.

    Raises:
        RunExistsError: the folder holds a run and neither ``resume`` nor ``overwrite`` was asked for.
        ResumeMismatchError: ``resume`` of a run that finished no epoch, with another configuration.
        RunFolderError: the folder is not a run but holds files a run writes (``report.json``, ``log.jsonl``,
            ...): they are never replaced, not even with ``overwrite``.
    """
    if run.has_checkpoint():
        if resume:
            return "resume"
        if overwrite:
            return "restart"
        raise RunExistsError(
            f"{run.path} already holds a run; pass --resume to continue it, --overwrite to start again, or choose "
            "another --out"
        )
    if run.is_run():
        if overwrite:
            return "restart"
        if resume:
            saved = TrainConfig.from_dict(run.read_config()).protocol_dict()
            now = config.protocol_dict()
            diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
            if diff:
                raise ResumeMismatchError(
                    f"cannot resume {run.path}: the configuration differs from its {CONFIG} (key: (run, now)): "
                    f"{diff}; resume with the run's own settings or start a new --out"
                )
            return "restart"  # it finished no epoch: nothing to continue from, nothing finished is lost
        raise RunExistsError(
            f"{run.path} holds a run that finished no epoch ({CONFIG}, no checkpoint); pass --resume to start it "
            "again with its configuration, --overwrite to replace it, or choose another --out"
        )
    found = run.run_files()
    if found:
        raise RunFolderError(
            f"{run.path} is not a focalcal run (no {CONFIG} or checkpoint) but holds "
            f"{', '.join(map(str, found))}, which a run would replace; nothing was changed: choose a new or empty "
            "--out (--overwrite replaces runs only)"
        )
    return "new"


class Trainer:
    """Train one run into a run folder.

    Args:
        config: the run's configuration (validated here).
        run_dir: the output folder (a path or a :class:`RunFolder`).
        data: pre-loaded splits (tests and the demo share one load); ``None`` loads them from the config.
        download: let torchvision download CIFAR if it is missing.
        progress: show tqdm bars.
        echo: called with one human-readable line per epoch (the CLI passes ``tqdm.write``); ``None``: silent.
        make_trackers: called with the run folder once it is ready for this run (rank 0 only); returns
            objects with ``log_epoch(record)`` that receive every epoch's record, e.g.
            :class:`focalcal.engine.trackers.TensorBoardTracker`. They are kept in ``self.trackers``.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | RunFolder,
        *,
        data: DataSplits | None = None,
        download: bool = False,
        progress: bool = True,
        echo: Callable[[str], None] | None = None,
        make_trackers: Callable[[RunFolder], Sequence[Any]] | None = None,
    ):
        config.validate()
        self.config = config
        self.run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.run_dir = self.run.path
        self.progress = progress
        self.echo = echo or (lambda _msg: None)
        self.make_trackers = make_trackers
        self.trackers: list[Any] = []
        self.device = resolve_device(config.device)
        self.dist = init_from_env(self.device.type)
        if not self.dist.is_main:
            self.echo, self.progress, self.make_trackers = (lambda _msg: None), False, None
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch size {config.batch_size} must be divisible by the {self.dist.world_size} processes"
            )
        self.data = data if data is not None else prepare_data(config, download=download)
        # what evaluation checks it scores this data: a hash of the validation and test splits (inputs, labels)
        self.data_fingerprint = self.data.fingerprint()
        mod, train_x = self.data.modality, self.data.train_inputs
        if not mod.memory_format and config.channels_last:
            raise ConfigError(f"channels_last applies to images, not {mod.name}; unset it (--no-channels-last)")

        torch.manual_seed(config.seed)
        self.model = build_model(
            config.model, self.data.training_classes, **config.model_options, **mod.model_options()
        ).to(self.device)
        self.precision = resolve_precision(
            self.device,
            config.amp,
            config.channels_last if mod.memory_format else False,
            model=self.model,
            input_shape=mod.example_key(train_x),
            example=None if mod.name == "images" else (lambda b: mod.example(train_x, b, self.device)),
        )
        # ranks on different hardware must still train alike (and DDP needs one memory format)
        self.amp, self.channels_last = all_ranks_true(
            [self.precision.amp, self.precision.channels_last], self.dist, self.device
        )
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.eval_channels_last = mod.memory_format and eval_channels_last(
            self.device, self.model, mod.example_key(train_x)
        )
        # labels come from the data pipeline (always in [0, K)): skip the loss's per-step label check,
        # which would cost a host-device sync per step on CUDA
        options = {"validate": False, **config.loss_options}
        if config.loss_normalization == "per_sample":  # the step uses loss_fn.sum_per_sample; "sum" says so in
            options["reduction"] = "sum"  # the loss's repr and keeps the logged loss per sample (_train_epoch)
        self.loss_fn = build_loss(config.loss, num_classes=self.data.training_classes, **options)
        self.loss_fn.to(self.device)
        if getattr(self.loss_fn, "needs_validation", False) and self.data.training_classes != self.data.num_classes:
            raise ConfigError(
                f"loss {config.loss!r} adapts to validation predictions over its {self.data.training_classes} "
                f"classes, but {config.dataset} evaluates {self.data.num_classes}; choose another loss"
            )
        self.optimizer = Optimizers(self.model, config)
        self.scheduler = Schedulers(self.optimizer, config)
        self.best: dict[str, Any] | None = None  # select_epoch best_val_acc: {"epoch", "val_acc", "model"}
        self.step_model = self._maybe_compile(self.model)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(self.step_model, device_ids=ids)

        mk = self._loader
        self.train_loader = mk("train", config.batch_size // self.dist.world_size, train=True)
        # the per-epoch validation metrics (log.jsonl) use the run's evaluation settings, as its report will
        self.eval_settings = resolve_settings(config)
        self.eval_batch = self.eval_settings.batch(self.device)
        self.val_loader = mk("val", self.eval_batch)
        self.test_loader = mk("test", self.eval_batch)
        n_dyn = min(config.dynamics_train_size, self.data.rows("train"))
        self.dyn_train_loader = mk("train", self.eval_batch, rows=torch.arange(n_dyn)) if n_dyn > 0 else None
        self.dyn_test_loader = self._dynamics_test_loader()

    def _loader(self, split: str, batch_size: int, *, train: bool = False, rows=None) -> BatchSource:
        """A training source (``train``: shuffled, augmented, this rank's share, in the training memory
        format) or an evaluation source (in order, in the measured evaluation format) of ``split`` (or its
        samples ``rows``), as the data's modality batches it."""
        return self.data.source(
            split,
            rows=rows,
            batch_size=batch_size,
            device=self.device,
            train=train,
            seed=self.config.seed,
            augment=self.config.augment and train,
            rank=self.dist.rank if train else 0,
            world_size=self.dist.world_size if train else 1,
            channels_last=self.channels_last if train else self.eval_channels_last,
            model=self.model,
        )

    def _dynamics_test_loader(self) -> BatchSource | None:
        """The test samples evaluated each epoch: all of them, or a fixed seeded subset (dynamics_test_size)."""
        size = self.config.dynamics_test_size
        n = self.data.rows("test")
        if size == 0:
            return None
        if size is None or size >= n:
            return self.test_loader
        g = torch.Generator().manual_seed(self.config.split_seed)
        idx = torch.randperm(n, generator=g)[:size].sort().values
        return self._loader("test", self.eval_batch, rows=idx)

    def _maybe_compile(self, model: torch.nn.Module) -> torch.nn.Module:
        self.compiled = False
        if not self.config.compile:
            return model
        try:
            compiled = torch.compile(model)
            # compilation is lazy: trigger it on a tiny eval-mode batch (no BN statistics change) so a
            # missing compiler toolchain shows here, where we can fall back, not at the first training step
            model.eval()
            x = self.data.modality.example(self.data.train_inputs, 2, self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.no_grad(), autocast(self.device, self.amp):  # as in training: bf16 graph if amp
                compiled(x)
            model.train()
            self.compiled = True
            return compiled
        except Exception as exc:  # compile is an optimisation: fall back, and say so
            model.train()
            self.echo(f"torch.compile unavailable ({type(exc).__name__}: {exc}); training uncompiled")
            return model

    def predict(self, loader: BatchSource) -> torch.Tensor:
        """Float32 logits of ``loader``'s samples (sharded across ranks under torchrun; all rows on every rank)."""
        return predict_logits(self.model, loader, dist=self.dist)

    # -- state -------------------------------------------------------------------------------------------
    def _state(self, epoch: int) -> dict[str, Any]:
        """Everything a checkpoint holds: training state, and what rebuilds the model without the data (the
        modality's state, the model options the data supplied, without tensors, and the training head's
        width)."""
        mod = self.data.modality
        state = {
            "epoch": epoch,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "classes": self.data.classes,
            "modality": mod.state(),
            "data_model_options": mod.stored_model_options(),
            "head_classes": self.data.training_classes,
            "data_info": self.data.info or {},
            "data_fingerprint": dict(self.data_fingerprint),
            "precision": {"amp": self.amp, "channels_last": self.channels_last},  # as the last epoch ran
        }
        if mod.name == "images":  # the keys image checkpoints have always had (older readers use them)
            state["mean"], state["std"] = self.data.mean, self.data.std
        if self.best is not None:
            state["best"] = self.best
        return state

    def _final_state(self) -> dict[str, Any]:
        """``final.pt``: the trained model (with ``select_epoch: best_val_acc``, the selected epoch's weights;
        ``selected_epoch`` says which), no optimiser state."""
        state = {k: v for k, v in self._state(self.config.epochs).items() if k not in ("optimizer", "scheduler")}
        state.pop("best", None)
        state["selected_epoch"] = self.config.epochs
        if self.config.select_epoch == "best_val_acc":
            if self.best is None:
                raise CheckpointError(f"{self.run.path}: no epoch was selected (no validation pass was recorded)")
            state["model"], state["selected_epoch"] = self.best["model"], int(self.best["epoch"])
            state["selected_val_acc"] = float(self.best["val_acc"])
        state["select_epoch"] = self.config.select_epoch
        return state

    def _restore(self) -> int:
        try:
            state = self.run.load_state(CHECKPOINT, map_location=self.device)
        except FileNotFoundError:
            raise CheckpointError(
                f"{self.run.path} has {FINAL} but no {CHECKPOINT} to resume from; evaluate it, or start again "
                "with --overwrite"
            ) from None
        except CheckpointError as exc:
            raise CheckpointError(
                f"{exc}: the run cannot be resumed from it; start again with --overwrite (or another --out)"
            ) from None
        saved = TrainConfig.from_dict(state["config"]).protocol_dict()
        now = self.config.protocol_dict()
        diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
        if diff:
            raise ResumeMismatchError(
                "cannot resume: the configuration differs from the checkpoint's "
                f"(key: (checkpoint, now)): {diff}; resume with the run's own settings or start a new --out"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loss_fn.load_state_dict(state["loss"])
        self.best = state.get("best")
        return int(state["epoch"])

    def _prepare_run_dir(self, resume: bool, overwrite: bool) -> int:
        """Returns the number of epochs already done. Called by every rank; only rank 0 writes."""
        how = start_mode(self.run, self.config, resume=resume, overwrite=overwrite)
        barrier(self.dist)  # every rank decides before rank 0 writes (a config.json it wrote would read as a run)
        if how == "resume":
            start = self._restore()
            if self.dist.is_main:
                self.run.truncate_log(start)
                if start < self.config.epochs:  # an evaluation of the unfinished model must not survive
                    self.run.clear_derived()
                self.run.write_config(self.config.to_dict())  # runtime keys (device, data_dir, ...) as resumed
            return start
        if self.dist.is_main:
            if how == "restart":  # the run's own files only (RunFolder.clear)
                self.run.clear()
            self.run.write_config(self.config.to_dict())
        return 0

    # -- loop --------------------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, overwrite: bool = False) -> Path:
        """Train for ``config.epochs`` epochs (continuing from ``last.pt`` with ``resume``); returns the folder.

        Holds the run folder's lock meanwhile (rank 0; see :meth:`RunFolder.lock`).

        Raises:
            RunExistsError, RunLockedError, ResumeMismatchError, CheckpointError, TrainingDiverged,
            DiskFullError: see :mod:`focalcal.errors`.
        """
        with self.run.lock() if self.dist.is_main else contextlib.nullcontext():
            if self.dist.is_main:
                self.run.remove_temp_files()
            start = self._prepare_run_dir(resume, overwrite)
            barrier(self.dist)
            if start:
                self.echo(f"resuming {self.run.path} after epoch {start}")
            if self.make_trackers is not None and not self.trackers:
                self.trackers = list(self.make_trackers(self.run))
            if self.dist.is_main:
                self.run.append_provenance(
                    session_record(
                        self.device,
                        world_size=self.dist.world_size,
                        batch_per_process=self.config.batch_size // self.dist.world_size,
                        eval_batch=self.eval_batch,
                        resumed_after_epoch=start,
                        precision={
                            "amp": self.amp,
                            "channels_last": self.channels_last,
                            "compiled": self.compiled,
                            "chosen_by": self.precision.reason,
                        },
                    )
                )
            if self.dist.enabled:
                per = self.config.batch_size // self.dist.world_size
                self.echo(
                    f"{self.dist.world_size} processes: global batch {self.config.batch_size} = "
                    f"{self.dist.world_size} x {per} per process; lr {self.config.lr} is the global batch's "
                    "(gradients are averaged over processes, so nothing is rescaled)"
                )
            if start < self.config.epochs:
                self.echo(
                    f"training on {self.device}: {'bfloat16 autocast' if self.amp else 'float32'}"
                    f"{', channels_last' if self.channels_last else ''}{', compiled' if self.compiled else ''}"
                    f" ({self.precision.reason})"
                )
                info = self.data.modality.info()
                if "word_vectors" in info:
                    self.echo(
                        f"word vectors {info['word_vectors']} ({info['embedding_dim']} dimensions): "
                        f"{info['oov_words']} of {info['vocabulary_size']} vocabulary words out of vocabulary; "
                        f"tokenizer fitted on {info['tokenizer_fit_on']}"
                    )
            for epoch in range(start, self.config.epochs):
                record = self._run_epoch(epoch)
                if self.dist.is_main:
                    self._save_epoch(epoch, record)
            if self.dist.is_main:
                self._disk_guard(self.run.save_final, self._final_state(), epoch=self.config.epochs)
            barrier(self.dist)
        return self.run.path

    def _save_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        # the log line goes first: a crash before the checkpoint leaves a line that resume drops and
        # rewrites, never a checkpoint whose epoch has no log line
        self._disk_guard(self.run.append_log, record, epoch=epoch)
        self._disk_guard(self.run.save_checkpoint, self._state(epoch + 1), epoch=epoch)
        for tracker in self.trackers:
            tracker.log_epoch(record)
        self.echo(
            f"epoch {record['epoch']}/{self.config.epochs}  loss {record['train_loss']:.4f}  "
            f"train acc {record['train_acc']:.4f}  val acc {record['val_acc']:.4f}  "
            f"val nll {record['val_nll']:.4f}  val ece {record['val_ece']:.4f}  {record['seconds']:.1f}s"
        )

    def _disk_guard(self, write: Callable[[Any], None], obj: Any, *, epoch: int) -> None:
        try:
            write(obj)
        except DiskFullError as exc:
            held = f"epoch {epoch}" if (self.run.path / CHECKPOINT).exists() else "no epoch yet"
            raise DiskFullError(
                f"{exc}; {CHECKPOINT} holds {held}: resume with `focalcal train --resume --out {self.run.path}`"
            ) from None

    def _last_good(self, epoch: int) -> str:
        if epoch >= 1 and (self.run.path / CHECKPOINT).exists():
            return f"the last good checkpoint is {self.run.path / CHECKPOINT} (epoch {epoch})"
        return "no checkpoint was written before it"

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        # the global RNG (dropout, e.g. the text models') restarts from (seed, epoch, rank) every epoch, as the
        # batch order and augmentation do, so a resumed run draws what an uninterrupted one would
        torch.manual_seed(epoch_seed(self.config.seed, epoch, self.dist.rank))
        self.loss_fn.set_epoch(epoch, self.config.epochs)
        lr = self.optimizer.param_groups[0]["lr"]
        train_loss, train_acc = self._train_epoch(epoch)
        train_seconds = time.perf_counter() - t0
        # DDP syncs BatchNorm statistics only at the start of a training forward: after the epoch's last step
        # each rank holds its own; evaluate (and save) rank 0's everywhere, so every shard sees one model
        broadcast_buffers(self.model, self.dist)

        val_logits = self.predict(self.val_loader)
        if not torch.isfinite(val_logits).all():
            raise TrainingDiverged(
                f"training diverged: validation logits are NaN/inf after epoch {epoch + 1}; {self._last_good(epoch)}; "
                "lower --lr and start a new --out"
            )
        val = self.eval_settings.summary(val_logits, self.data.val_labels)  # the run's bins and bin rule
        if getattr(self.loss_fn, "needs_validation", False):
            self.loss_fn.update_from_validation(val_logits.to(self.device), self.data.val_labels.to(self.device))
            broadcast_buffers(self.loss_fn, self.dist)  # every rank trains with rank 0's loss state
        self.scheduler.step()
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "val_nll": val["nll"],
            "val_ece": val["ece"],
            "val_acc": 1.0 - val["error"],
            "amp": self.amp,  # as resolved for this device (a resumed run may differ from its start)
            "channels_last": self.channels_last,
        }
        if self.config.select_epoch == "best_val_acc":
            if self.best is None or record["val_acc"] > self.best["val_acc"]:  # the first of equals stays
                weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.best = {"epoch": epoch + 1, "val_acc": record["val_acc"], "model": weights}
            record["selected_epoch"] = self.best["epoch"]
        gamma = getattr(self.loss_fn, "gamma", None)
        if isinstance(gamma, (int, float)) or (isinstance(gamma, torch.Tensor) and gamma.numel() == 1):
            record["gamma"] = float(gamma)
        record["fc_weight_norm"] = float(last_linear(self.model).weight.detach().norm())
        last = epoch + 1 == self.config.epochs
        if (epoch + 1) % self.config.dynamics_every == 0 or last:
            record.update(self._dynamics())
        record["train_seconds"] = train_seconds
        record["seconds"] = time.perf_counter() - t0
        return record

    def _dynamics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.dyn_train_loader is not None:
            logits = self.predict(self.dyn_train_loader)
            stats = split_nll_entropy(logits, self.dyn_train_loader.labels.cpu())
            out.update({f"train_eval_{k}": v for k, v in stats.items()})
        if self.dyn_test_loader is not None:
            logits = self.predict(self.dyn_test_loader)
            out.update(
                {f"test_{k}": v for k, v in split_nll_entropy(logits, self.dyn_test_loader.labels.cpu()).items()}
            )
        return out

    def _step(self, x: Any, y: torch.Tensor, params: list[torch.nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step on a batch: forward (under the run's autocast), loss, backward, gradient clipping,
        optimiser step. Returns the loss as stepped on (per sample with ``loss_normalization: per_sample``) and
        the logits, both still on the device."""
        cfg = self.config
        with autocast(self.device, self.amp):
            logits = self.step_model(x)
        if cfg.loss_normalization == "per_sample":  # DDP's average of equal batches is the global per-sample mean
            loss = self.loss_fn.sum_per_sample(logits, y, len(x)) / len(x)
        else:
            loss = self.loss_fn(logits, y)
            if getattr(self.loss_fn, "reduction", "mean") == "sum" and self.dist.enabled:
                loss = loss * self.dist.world_size  # DDP averages gradients; a sum must stay a sum
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.optimizer.step()
        return loss, logits

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        loss_fn, cfg = self.loss_fn, self.config
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        # loss_sum accumulates the loss summed over targets (an image, a labelled tree node); per_sample divides
        # each batch's sum (targets' losses + samples x a batch term such as MMCE) by its samples (trees) for the
        # step, so the logged loss is per sample, else per target
        per_sample = cfg.loss_normalization == "per_sample"
        per_batch_mean = not per_sample and getattr(loss_fn, "reduction", "mean") == "mean"
        n_targets = n_samples = 0
        batches = self.train_loader.epoch(epoch)
        bar = tqdm(
            batches,
            total=len(self.train_loader),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not self.progress,
        )
        for x, y in bar:
            loss, logits = self._step(x, y, params)
            batch_samples = len(x)  # images, documents or trees (y holds one label per target)
            with torch.no_grad():  # accumulated on the device; read once per epoch (no per-step sync)
                scale = y.shape[0] if per_batch_mean else (batch_samples if per_sample else 1 / self.dist.world_size)
                loss_sum += loss.detach() * scale
                correct += (logits.argmax(1) == y).sum()
            n_targets += y.shape[0]
            n_samples += batch_samples
        totals = all_reduce_sum(torch.stack([loss_sum, correct.to(loss_sum.dtype)]), self.dist)
        counts = all_reduce_sum(torch.tensor([n_targets, n_samples], dtype=torch.int64, device=self.device), self.dist)
        n_targets, n_samples = int(counts[0]), int(counts[1])
        loss_value, correct = float(totals[0]) / (n_samples if per_sample else n_targets), totals[1]
        n = n_targets  # the training accuracy is over targets (every labelled node of a tree)
        if not torch.isfinite(torch.tensor(loss_value)):
            raise TrainingDiverged(
                f"training diverged: the loss became {loss_value} in epoch {epoch + 1}; {self._last_good(epoch)}; "
                "lower --lr and start a new --out"
            )
        return loss_value, float(correct) / n
