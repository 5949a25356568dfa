"""Pieces every sub-command shares: data/device flags, one-line output, parsing helpers."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from ..data import DATA_ENV, describe_layouts


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


def add_eval_batch_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--eval-batch",
        type=positive_int,
        help="inference batch (default: the run's eval_batch_size, else 64 on a CPU and 1024 on CUDA; "
        "speed and memory only)",
    )


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
    from ..errors import InputError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out
