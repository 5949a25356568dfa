"""Pieces every sub-command shares: data/device flags, one-line output, parsing helpers."""

from __future__ import annotations

import argparse
from typing import Any

from tqdm.auto import tqdm

from ..data import DATA_ENV, describe_layouts
from ..defaults import BIN_CLOSED, BIN_CLOSED_CHOICES, N_BINS, TS_METHOD, TS_METHODS
from ..engine.runfolder import CONFIG, REPORT
from ..errors import InputError
from ..validation import n_bins_problem


def echo(msg: str) -> None:
    """Print one line without breaking a progress bar."""
    tqdm.write(msg)


def add_data_args(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"data root (default: ${DATA_ENV}, else ./data). Layouts under it: {describe_layouts()}; "
        "--dataset imagefolder: <root>/{train,test}/<class>/<image>",
    )
    if device:
        p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")


def add_eval_batch_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--eval-batch",
        type=positive_int,
        help="inference batch (default: the run's eval_batch_size, else 64 on a CPU and 1024 on CUDA; "
        "speed and memory only)",
    )


#: The evaluation-settings flags :func:`add_eval_settings_args` can add (their ``argparse`` destinations).
EVAL_FLAGS = ("n_bins", "bin_closed", "ts_method", "eval_batch")
#: Where each kind of command takes an unset evaluation flag from, as its help says. ``run``: the run's
#: settings (``evaluate``); ``evaluated``: the run's report.json, else its config.json (``ood``:
#: :func:`focalcal.eval_settings.run_settings`); ``report``: the run's report.json (``plot``); ``config``: the
#: preset's, else the defaults (``train``: the flags set the run's configuration); ``fixed``: the defaults
#: (``calibrate``).
_DEFAULT_FROM = {
    "run": "the run's",
    "evaluated": f"the run's {REPORT}, else its {CONFIG}",
    "report": "the report's",
    "config": None,
    "fixed": None,
}


def n_bins_arg(text: str) -> int:
    """``--n-bins``: a whole number >= 1, or the one line every check of ``n_bins`` says
    (:func:`focalcal.validation.n_bins_problem`)."""
    try:
        value: Any = int(text)
    except ValueError:
        value = text
    problem = n_bins_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


#: Each evaluation-settings flag but ``--eval-batch``: its ``add_argument`` type or choices, its named default (of
#: :mod:`focalcal.defaults`) and its help before the default.
_EVAL_ARGS: dict[str, tuple[dict[str, Any], object, str]] = {
    "n_bins": ({"type": n_bins_arg}, N_BINS, "calibration bins, a whole number >= 1"),
    "bin_closed": (
        {"choices": BIN_CLOSED_CHOICES},
        BIN_CLOSED,
        "equal-width bins [lo, hi) (left, as torchmetrics) or (lo, hi] (right, the authors' code)",
    ),
    "ts_method": (
        {"choices": TS_METHODS},
        TS_METHOD,
        "the main temperature: fitted by validation NLL or the paper's ECE grid",
    ),
}


def add_eval_settings_args(
    p: argparse.ArgumentParser, *, defaults: str = "run", flags: tuple[str, ...] = EVAL_FLAGS
) -> None:
    """Add the evaluation-settings flags ``flags`` (of :data:`EVAL_FLAGS`: ``--n-bins``, ``--bin-closed``,
    ``--ts-method``, ``--eval-batch``) as one argument group, with one type, choice list and message each.

    ``defaults`` (see :data:`_DEFAULT_FROM`): ``"fixed"`` gives unset flags the named defaults of
    :mod:`focalcal.defaults`; the others leave them ``None`` (the run's, the report's, or the preset's value;
    :func:`focalcal.eval_settings.resolve_settings` applies them).
    """
    unknown = sorted(set(flags) - set(EVAL_FLAGS))
    if unknown or defaults not in _DEFAULT_FROM:
        raise ValueError(f"unknown evaluation flags {unknown} or defaults {defaults!r}")
    fixed = defaults == "fixed"
    source = _DEFAULT_FROM[defaults]

    def default_text(value: object) -> str:
        return f"default: {source}" if source else f"default {value}"

    g = p.add_argument_group("evaluation settings")
    for flag in (f for f in EVAL_FLAGS if f in flags):  # in the order of EVAL_FLAGS
        if flag == "eval_batch":
            add_eval_batch_arg(g)
            continue
        kind, default, text = _EVAL_ARGS[flag]
        g.add_argument(
            "--" + flag.replace("_", "-"),
            **kind,
            default=default if fixed else None,
            help=f"{text} ({default_text(default)})",
        )


def eval_run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluation settings and data flags a run-evaluating command has (:func:`add_eval_settings_args`,
    :func:`add_data_args`), as the keyword arguments of :func:`focalcal.evaluation.evaluate_run` and
    :func:`focalcal.evaluation.ood.score_run`: ``n_bins``, ``bin_closed``, ``ts_method``, ``eval_batch_size``
    (``--eval-batch``; each only if the command has the flag, ``None`` when unset: the run's), ``data_dir`` and
    ``device`` (``"auto"`` when unset)."""
    options = {"data_dir": args.data_dir, "device": args.device or "auto"}
    for flag in (f for f in EVAL_FLAGS if hasattr(args, f)):
        options["eval_batch_size" if flag == "eval_batch" else flag] = getattr(args, flag)
    return options


def count_or_fraction(text: str) -> int | float:
    """``"5000"`` -> 5000 (images); ``"0.1"`` -> 0.1 (a fraction in (0, 1)); ``"1.0"`` is ambiguous: refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an image count or a fraction, got {text!r}") from None
    integral = text.strip().lstrip("+").isdigit()
    if integral:
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f"an image count must be >= 1, got {text}")
        return int(text)
    if value == 1.0:
        raise argparse.ArgumentTypeError("1.0 is ambiguous: write 1 for one image, or a fraction below 1 such as 0.1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"a fraction must lie in (0, 1) (an image count has no decimal point), got {text}"
        )
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def key_values(pairs: list[str], flag: str) -> dict[str, str]:
    """``["gamma=3", "schedule=0:5,100:3"]`` -> ``{"gamma": "3", "schedule": "0:5,100:3"}``.

    Values stay strings: the registries convert and validate each option.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def add_key_values_arg(p: argparse.ArgumentParser, flag: str, help: str, *, metavar: str = "KEY=VALUE") -> None:
    """A repeatable ``flag KEY=VALUE`` option, parsed to the list of the strings given (``[]`` when none; see
    :func:`key_values`)."""
    p.add_argument(flag, action="append", default=[], metavar=metavar, help=help)
