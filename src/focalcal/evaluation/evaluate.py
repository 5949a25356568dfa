"""Evaluate a trained run on the test split, before and after temperature scaling fitted on validation.

The temperature is fitted on the validation split only; the test split is never used to tune anything.
Under ``torchrun`` every rank computes its shard of each split and the shards are gathered before any
metric is computed, so a metric always sees every sample exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import DataSplits, Modality, modality_from_state
from ..engine.config import TrainConfig
from ..engine.device import resolve_device
from ..engine.distributed import DistInfo, init_from_env
from ..engine.precision import eval_channels_last
from ..engine.runfolder import RunFolder
from ..engine.trainer import predict_logits, prepare_data
from ..errors import DataError, InputError
from ..eval_settings import EvalSettings, resolve_settings
from ..models import build_model

UNITS = "fractions (error, ece, adaptive_ece, classwise_ece, mce, brier); nll in nats"


@dataclass
class LoadedRun:
    """A trained model restored from a run folder, with how its inputs were processed in training.

    ``mean`` / ``std``: the image normalisation (``None`` for other data); ``modality``: the inputs' processing
    (:class:`~focalcal.data.Modality`, rebuilt from the checkpoint: for text, the vocabulary size, the word
    vectors' record and the tokenizer's settings); ``selected_epoch``: the epoch whose weights the model holds
    (``select_epoch: best_val_acc``; else ``epoch``); ``data_info``: what the training data said of itself;
    ``data_fingerprint``: ``{split: hash}`` of the validation and test splits it was trained with
    (:meth:`~focalcal.data.DataSplits.fingerprint`; ``None`` for runs made before fingerprints).
    """

    config: TrainConfig
    model: torch.nn.Module
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    classes: list[str]
    epoch: int
    device: torch.device
    precision: dict[str, bool] | None = None  # training's {"amp", "channels_last"} (None: older runs)
    checkpoint: Path | None = None
    note: str | None = None  # why checkpoints/last.pt was used instead of final.pt
    modality: Modality | None = None
    selected_epoch: int | None = None
    data_info: dict[str, Any] | None = None
    data_fingerprint: dict[str, str] | None = None


def load_run(run_dir: str | Path | RunFolder, *, device: str = "auto") -> LoadedRun:
    """Restore ``final.pt`` (else ``checkpoints/last.pt``: an unfinished run, or a damaged ``final.pt``).

    Raises:
        RunFolderError: no usable checkpoint (the message names each damaged file and the fix).
    """
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    dev = resolve_device(device)
    state, path, note = run.load_trained(map_location=dev)
    config = TrainConfig.from_dict(state["config"])
    modality = modality_from_state(state)
    # the model's shape without the data: the training head's width and the options the data supplied, without
    # tensors (e.g. vocab_size / embedding_dim instead of the word vectors: the weights are in the state dict)
    head = int(state.get("head_classes", len(state["classes"])))
    options = {**config.model_options, **state.get("data_model_options", {})}
    model = build_model(config.model, head, **options).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    return LoadedRun(
        config,
        model,
        tuple(state["mean"]) if "mean" in state else None,
        tuple(state["std"]) if "std" in state else None,
        list(state["classes"]),
        int(state["epoch"]),
        dev,
        state.get("precision"),
        path,
        note,
        modality,
        int(state.get("selected_epoch", state["epoch"])),
        state.get("data_info"),
        state.get("data_fingerprint"),
    )


def run_logits(
    run: LoadedRun,
    images: Any,
    labels: torch.Tensor,
    batch_size: int | None = None,
    dist: DistInfo | None = None,
) -> torch.Tensor:
    """Logits ``[N, K]`` (float32, CPU) of the run's model on a split's inputs (uint8 ``images`` normalised as in
    training, token ids, trees: as the run's modality batches them), in batches of ``batch_size`` (default: the
    run's :meth:`~focalcal.eval_settings.EvalSettings.batch`: its ``eval_batch_size``, else the device's default)."""
    modality = run.modality if run.modality is not None else modality_from_state({"mean": run.mean, "std": run.std})
    cl = modality.memory_format and eval_channels_last(run.device, run.model, tuple(modality.example_key(images)))
    if batch_size is None:
        batch_size = resolve_settings(run.config).batch(run.device)
    loader = modality.source(
        images, labels, batch_size=batch_size, device=run.device, channels_last=cl, model=run.model
    )
    return predict_logits(run.model, loader, dist=dist)  # float32: metrics never see bf16-rounded logits


def _names(classes: list[str]) -> str:
    shown = ", ".join(classes[:12]) + (f", ... ({len(classes)} classes)" if len(classes) > 12 else "")
    return f"[{shown}]"


def check_same_data(run: LoadedRun, data: DataSplits, where: str | None = None) -> dict[str, str]:
    """Raise unless ``data`` is the data ``run`` was trained on: the same class names in the same label order
    (the checkpoint stores them), the same training split (its per-channel mean and std, stored with the
    model, identify the training images used, to float64 rounding) and the same validation and test splits
    (their fingerprints, :meth:`~focalcal.data.DataSplits.fingerprint`, stored with the model; runs made before
    fingerprints are not checked for this).

    Returns:
        ``data``'s fingerprints ``{split: hash}`` (what the report records).

    Raises:
        DataError: one line naming both class lists, the differing normalisation or the differing splits;
            the report is unchanged.
    """
    here = f" ({where})" if where else ""
    if list(data.classes) != list(run.classes):
        raise DataError(
            f"the run was trained on classes {_names(list(run.classes))} but the data{here} holds "
            f"{_names(list(data.classes))}: the classes differ, so this would not evaluate the run; point "
            "--data-dir at the data it was trained on (nothing was written)"
        )
    vocab_run = getattr(run.modality, "vocab_size", None)
    vocab_now = getattr(data.modality, "vocab_size", None)
    if vocab_run is not None and vocab_now != vocab_run:
        raise DataError(
            f"the data{here} has the run's classes but a vocabulary of {vocab_now} token ids, the run's "
            f"{vocab_run}: another data set or tokenizer setting (data_options); point --data-dir at the data "
            "the run was trained on (nothing was written)"
        )
    try:
        stats_now = (*data.mean, *data.std)
        stats_run = (*run.mean, *run.std)
    except (AttributeError, TypeError):  # data without per-channel statistics (not images)
        stats_now = stats_run = ()
    if len(stats_now) != len(stats_run) or any(abs(a - b) > 1e-9 for a, b in zip(stats_now, stats_run)):
        raise DataError(
            f"the data{here} has the run's classes but not its training images (per-channel mean/std "
            f"{_round(data.mean)}/{_round(data.std)}, the run's {_round(run.mean)}/{_round(run.std)}): another "
            "data set; point --data-dir at the data the run was trained on (nothing was written)"
        )
    fingerprint = data.fingerprint()
    stored = run.data_fingerprint or {}  # runs made before fingerprints: nothing to compare
    differ = [s for s in stored if s in fingerprint and stored[s] != fingerprint[s]]
    if differ:
        names = " and ".join(_SPLIT_NAMES.get(s, s) for s in differ)
        verb = "split differs" if len(differ) == 1 else "splits differ"
        now, then = ", ".join(fingerprint[s] for s in differ), ", ".join(stored[s] for s in differ)
        raise DataError(
            f"the data{here} has the run's classes but its {names} {verb} from the run's (fingerprint {now}, the "
            f"run's {then}): point --data-dir at the data the run was trained on; to "
            "score other data use `focalcal calibrate` on saved outputs or `focalcal ood` (nothing was written)"
        )
    return fingerprint


_SPLIT_NAMES = {"val": "validation", "test": "test", "train": "training"}


def _round(values) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def evaluate(
    run: LoadedRun,
    data: DataSplits,
    *,
    n_bins: int | None = None,
    ts_method: str | None = None,
    bin_closed: str | None = None,
    dist: DistInfo | None = None,
    where: str | None = None,
    settings: EvalSettings | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compute the evaluation numbers with ``settings`` (default: :func:`~focalcal.eval_settings.
    resolve_settings` of the run's config and the overrides ``n_bins``, ``ts_method`` and ``bin_closed``, ``None``
    keeping the run's), in inference batches of ``settings.batch(run.device)``; ``where``: the data's location,
    for the refusal's message.

    Raises:
        InputError: an invalid setting, or ``settings`` given with overrides.
        DataError: ``data`` is not the data the run was trained on (:func:`check_same_data`), before anything
            is computed.

    Returns:
        ``(report, arrays)``: ``report`` is JSON-able (all metrics as fractions; the content of
        ``report.json``), ``arrays`` holds the logits and ``BinStats`` for plotting.
    """
    if settings is None:
        settings = resolve_settings(run.config, n_bins=n_bins, ts_method=ts_method, bin_closed=bin_closed)
    elif (n_bins, ts_method, bin_closed) != (None, None, None):
        raise InputError("pass either settings or the overrides n_bins / ts_method / bin_closed, not both")
    fingerprint = check_same_data(run, data, where)
    cfg = run.config
    s = settings
    batch = s.batch(run.device)
    val_logits = run_logits(run, data.val_inputs, data.val_labels, batch, dist=dist)
    test_logits = run_logits(run, data.test_inputs, data.test_labels, batch, dist=dist)
    train_logits = run_logits(run, data.train_inputs, data.train_labels, batch, dist=dist)
    val_y, test_y = data.val_labels, data.test_labels
    modality = run.modality or data.modality

    scalers = {m: s.temperature(m).fit(val_logits, val_y) for m in s.ts_methods}  # the main one first
    main = scalers[s.ts_method]
    on = s.summary
    # each test pass once: the summary and the reliability bins of the same logits come from one scan
    test_after_logits = main.transform(test_logits)
    test_before, bins_before = s.summary_and_bins(test_logits, test_y)
    test_after, bins_after = s.summary_and_bins(test_after_logits, test_y)
    after_by_method = {
        m: test_after if m == s.ts_method else on(c.transform(test_logits), test_y) for m, c in scalers.items()
    }

    report: dict[str, Any] = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "loss": cfg.loss,
        "loss_options": cfg.loss_options,
        "seed": cfg.seed,
        "epochs_trained": run.epoch,
        "epochs": cfg.epochs,
        "checkpoint": run.checkpoint.name if run.checkpoint else None,
        "training_precision": run.precision,  # evaluation itself is always float32
        "n_bins": s.n_bins,
        "bin_closed": s.bin_closed,
        "binning": s.binning,
        "n_train": int(data.train_labels.shape[0]),
        "n_val": int(val_y.shape[0]),
        "n_test": int(test_y.shape[0]),
        "units": UNITS,
        "temperature": {
            m: {"value": c.temperature, "converged": c.converged, "at_bound": c.at_bound} for m, c in scalers.items()
        },
        "ts_method": s.ts_method,
        "test": {"before": test_before, "after": test_after},
        "test_after_by_method": after_by_method,
        "val": {"before": on(val_logits, val_y), "after": on(main.transform(val_logits), val_y)},
        "train": on(train_logits, data.train_labels),  # un-augmented: the train accuracy reached is 1 - error
        "samples": modality.noun,
        "select_epoch": cfg.select_epoch,
        "selected_epoch": run.selected_epoch if run.selected_epoch is not None else run.epoch,
        "data_fingerprint": fingerprint,  # {split: hash} of the validation and test splits scored
    }
    if data.info:
        report["data"] = data.info
    inputs_info = modality.info()  # text: the word vectors, their dimension, OOV words, the tokenizer's fit
    if inputs_info:
        report["inputs"] = inputs_info
    extra = modality.extra_metrics(
        model=run.model,
        inputs=data.test_inputs,
        labels=test_y,
        predict=lambda model, source: predict_logits(model, source, dist=dist),
        batch_size=batch,
        device=run.device,
        temperature=float(main.temperature),
        n_bins=s.n_bins,
        bin_closed=s.bin_closed,
        val=(data.val_inputs, val_y),
    )
    if extra:  # a data set's own metrics of the test split (binary SST: the paper's confidence), each labelled
        report["test_extra"] = extra
    arrays = {
        "val_logits": val_logits,
        "val_labels": val_y,
        "test_logits": test_logits,
        "test_labels": test_y,
        "temperature": main.temperature,
        "bins_before": bins_before,
        "bins_after": bins_after,
    }
    return report, arrays


def evaluate_run(
    run_dir: str | Path | RunFolder,
    *,
    n_bins: int | None = None,
    ts_method: str | None = None,
    bin_closed: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    data: DataSplits | None = None,
    echo: Callable[[str], None] | None = None,
    eval_batch_size: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a run and evaluate it (see :func:`evaluate`); ``data_dir`` overrides the run's data location and
    ``eval_batch_size`` its evaluation batch (speed and memory only: the numbers do not depend on it).

    Under ``torchrun`` every rank must call it (each computes its shard); every rank gets the report.

    Raises:
        InputError: an invalid setting (before any data is read); see also :func:`evaluate`.
    """
    dev = resolve_device(device)
    dist = init_from_env(dev.type)
    if dist.enabled and dev.type == "cuda":  # one GPU per process, as in training
        dev = torch.device("cuda", dist.local_rank)
    run = load_run(run_dir, device=str(dev))
    settings = resolve_settings(
        run.config, n_bins=n_bins, ts_method=ts_method, bin_closed=bin_closed, eval_batch_size=eval_batch_size
    )
    if run.note and echo:
        echo(f"note: {run.note}")
    where = None
    if data is None:
        cfg = run.config if data_dir is None else run.config.replace(data_dir=data_dir)
        where = cfg.data_dir
        try:
            data = prepare_data(cfg, word_vectors=False)  # the model's word vectors are in its checkpoint
        except DataError as exc:
            if data_dir is None and cfg.data_dir:  # the location came from the run, not from the user
                raise DataError(
                    f"{exc} (the data location {cfg.data_dir!r} is the one recorded in the run; give --data-dir "
                    "where the data is now)"
                ) from None
            raise
    return evaluate(run, data, settings=settings, dist=dist, where=where)
