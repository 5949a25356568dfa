"""The sub-commands behind ``focalcal``; each takes the parsed arguments and does the I/O."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..data import DATASETS
from ..engine import TrainConfig, Trainer, evaluate_run, write_evaluation
from ..losses import available_losses
from ..models import describe_models
from .presets import available_presets, load_preset

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
    "amp": "amp",
    "channels_last": "channels_last",
    "compile": "compile",
    "data_dir": "data_dir",
    "device": "device",
    "dynamics_train_size": "dynamics_train_size",
    "dynamics_test": "dynamics_test",
}


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["gamma=3", "schedule=0:5,100:3"]`` -> ``{"gamma": "3", "schedule": "0:5,100:3"}``.

    Values stay strings: the loss registry converts and validates each option (see ``build_loss``).
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--loss-opt expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's configuration: the preset (or, with --resume, the run's own config.json), then the flags given."""
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        values: dict[str, Any] = json.loads(saved.read_text())
    else:
        values = load_preset(args.preset) if args.preset else {}
    for flag, key in _FLAG_TO_KEY.items():
        v = getattr(args, flag, None)
        if v is not None:
            values[key] = v
    if args.grad_clip is not None:
        values["grad_clip"] = args.grad_clip or None
    if args.loss_opt:
        values["loss_options"] = {**values.get("loss_options", {}), **parse_options(args.loss_opt)}
    return TrainConfig.from_dict(values)


def _echo(msg: str) -> None:
    tqdm.write(msg)


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    trainer = Trainer(config, args.out, download=args.download, progress=not args.no_progress, echo=_echo)
    trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if not trainer.dist.is_main:  # under torchrun only rank 0 reports
        return 0
    _echo(f"trained {config.model} with {config.loss} for {config.epochs} epochs -> {args.out}")
    if not args.no_eval:
        report, arrays = evaluate_run(args.out, data=trainer.data, device=config.device)
        write_evaluation(args.out, report, arrays)
        _print_summary(args.out, report)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    report, arrays = evaluate_run(
        args.run_dir,
        n_bins=args.n_bins,
        ts_method=args.ts_method,
        data_dir=args.data_dir,
        device=args.device or "auto",
    )
    write_evaluation(args.run_dir, report, arrays)
    _print_summary(args.run_dir, report)
    return 0


def _print_summary(run_dir: str | Path, report: dict[str, Any]) -> None:
    b, a = report["test"]["before"], report["test"]["after"]
    t = report["temperature"][report["ts_method"]]["value"]
    _echo(
        f"test error {100 * b['error']:.2f}%  NLL {b['nll']:.4f} -> {a['nll']:.4f}  "
        f"ECE {100 * b['ece']:.2f}% -> {100 * a['ece']:.2f}% (T={t:.3f})  report: {Path(run_dir) / 'report.md'}"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args, echo=_echo)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print("datasets: " + ", ".join(DATASETS))
    print("models:")
    for name, desc in describe_models().items():
        print(f"  {name:18s} {desc}")
    print("losses: " + ", ".join(available_losses()))
    print("presets: " + ", ".join(available_presets()))
    return 0
