"""The errors focalcal raises for problems in what it is given or asked to do.

Every one of them is a :class:`FocalcalError` (a ``ValueError``, so ``except ValueError`` keeps working) whose
message names the problem and the fix in one line. The ``focalcal`` command prints such errors as
``focalcal: error: <message>`` with exit status 2; anything else (a bug) keeps its traceback.

>>> from focalcal.errors import FocalcalError, InputError
>>> issubclass(InputError, FocalcalError) and issubclass(FocalcalError, ValueError)
True
"""

from __future__ import annotations


class FocalcalError(ValueError):
    """A problem with the input, configuration, data or run folder; the message says how to fix it."""


class InputError(FocalcalError):
    """An argument of a library function is invalid (shape, dtype, range, name, option)."""


class ConfigError(FocalcalError):
    """A training configuration, preset or experiment family is invalid."""


class DataError(FocalcalError):
    """Data is missing, unreadable, or not what its name says (class count, image counts, image size)."""


class DownloadError(DataError):
    """Downloading a data set failed (no network, a bad checksum); the message says where to put its files by hand."""


class RunFolderError(FocalcalError):
    """A run folder cannot be used as asked."""


class RunExistsError(RunFolderError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


class RunLockedError(RunFolderError):
    """Another process is using the run folder (it holds the folder's lock)."""


class ResumeMismatchError(RunFolderError):
    """A run cannot be resumed because the requested configuration differs from its checkpoint's."""


class CheckpointError(RunFolderError):
    """A checkpoint (or another file of a run folder) is damaged or not a focalcal file."""


class TrainingDiverged(FocalcalError):
    """The training loss or the validation logits became NaN/inf."""


class DiskFullError(FocalcalError):
    """A write failed because the disk is full; what was written before stays valid."""
