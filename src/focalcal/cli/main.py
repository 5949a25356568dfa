"""``focalcal``: train, evaluate, calibrate and compare calibrated classifiers from the command line.

Every sub-command lives in its own module of :mod:`focalcal.cli` with a ``register(subparsers)`` function
(:data:`COMMANDS`, in the order ``--help`` lists them). Errors in what the user gave or asked for
(:class:`~focalcal.errors.FocalcalError`, missing files, permissions, a full disk) are printed as one line,
``focalcal: error: ...``, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from ..errors import FocalcalError

EXIT_USAGE = 2
#: Sub-command modules of focalcal.cli, each with ``register(subparsers)``.
COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "ood",
    "plot",
    "sweep",
    "table",
    "claims",
    "reproduction",
    "calibrate",
    "demo",
    "listing",
)
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="focalcal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FocalcalError as exc:
        print(f"focalcal: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if isinstance(exc, _USER_OS_ERRORS) or exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES):
            print(f"focalcal: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except KeyboardInterrupt:
        print(
            "focalcal: interrupted; a training run continues with `focalcal train --resume --out RUN`", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
