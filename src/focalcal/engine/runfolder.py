"""The run folder: its layout, its lock, and every read and write of its files, in one place.

A run folder holds one training run and what was derived from it:

=============================  ==============================================================  ===============
file                           content                                                         written by
=============================  ==============================================================  ===============
``config.json``                the resolved :class:`~focalcal.engine.TrainConfig`               train
``provenance.json``            per training session: command, focalcal version, git commit,     train
                               Python/torch/CUDA versions, device, precision
``log.jsonl`` / ``log.csv``    one record per epoch (the CSV is the same table)                  train
``checkpoints/last.pt``        full training state after the last finished epoch               train
``final.pt``                   the trained model, its normalisation and classes                train
``report.json`` / ``.md``      test (and train/validation) metrics before/after TS              evaluate
``reliability_*.png``          reliability diagrams before / after TS                           evaluate
``logits.pt``                  validation and test logits and labels                            evaluate
``ood.json`` / ``ood.md``      OOD detection and calibration under shift                        ood
``ood_roc_<score>.png``        ROC curves                                                       ood
``tensorboard/``               TensorBoard event files (``--tensorboard``)                      train
``wandb/``                     Weights & Biases files (``--wandb``; offline runs stay here)     train
``.lock``                      held by the process using the folder                             any
=============================  ==============================================================  ===============

Every file has one writer (the table's last column), and every write is atomic (temporary file, fsync,
rename). A process that writes takes the folder's lock first (:meth:`RunFolder.lock`): an exclusive
``flock`` on ``.lock`` that the operating system releases when the process ends, however it ends, so a
killed run never leaves a stale lock; a second process gets :class:`~focalcal.errors.RunLockedError`
naming the holder's PID. Taking the lock removes the temporary files that interrupted writes left behind.

A folder is a run folder when it holds ``config.json`` (the first file training writes); other folders,
such as the demo's summary folder, are never taken for runs. :meth:`RunFolder.find` finds the run folders
at or under given paths (finished or not).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import io
import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_torch_save, atomic_write_csv, atomic_write_text, disk_full, remove_temp_files
from ..errors import CheckpointError, RunFolderError, RunLockedError

CONFIG = Path("config.json")
PROVENANCE = Path("provenance.json")
LOG = Path("log.jsonl")
LOG_CSV = Path("log.csv")
CHECKPOINT = Path("checkpoints") / "last.pt"
FINAL = Path("final.pt")
REPORT = Path("report.json")
REPORT_MD = Path("report.md")
LOGITS = Path("logits.pt")
OOD = Path("ood.json")
OOD_MD = Path("ood.md")
LOCK = Path(".lock")
TENSORBOARD = Path("tensorboard")
WANDB = Path("wandb")

#: Files training writes (``--overwrite`` removes them, with the derived ones and the trackers' folders).
TRAINING_FILES = (CHECKPOINT, FINAL, LOG, LOG_CSV, CONFIG, PROVENANCE)
_LOGIT_KEYS = ("val_logits", "val_labels", "test_logits", "test_labels")
_STATE_KEYS = ("epoch", "config", "model", "classes")
#: What rebuilds the inputs' processing: ``modality`` (any data), or ``mean`` and ``std`` (image runs made before).
_INPUT_KEYS = (("modality",), ("mean", "std"))


def reliability_png(stage: str) -> Path:
    return Path(f"reliability_{stage}.png")


def ood_roc_png(score: str) -> Path:
    return Path(f"ood_roc_{score}.png")


#: Files derived from the trained model (evaluation, OOD), as glob patterns; a new training run removes them.
DERIVED_GLOBS = tuple(
    str(name) for name in (REPORT, REPORT_MD, LOGITS, reliability_png("*"), OOD, OOD_MD, ood_roc_png("*"))
)


def _runs_under(root: Path) -> list[RunFolder]:
    """The run folders at or under ``root`` in sorted path order, following links to folders, each folder once."""
    runs, visited, stack = [], set(), [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()  # follows a link: a cycle reaches a folder already visited
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in visited or not folder.is_dir():
            continue
        visited.add((st.st_dev, st.st_ino))
        run = RunFolder(folder)
        if run.is_run():
            runs.append(run)
            continue
        try:
            children = sorted((c for c in folder.iterdir() if c.is_dir()), reverse=True)
        except OSError:  # unreadable: nothing found there
            continue
        stack += children
    return runs


class RunFolder:
    """One run folder (see the module docstring for its files).

    >>> import tempfile
    >>> run = RunFolder(tempfile.mkdtemp())
    >>> with run.lock():
    ...     run.write_config({"model": "resnet20"})
    >>> run.read_config()["model"], run.has_checkpoint()
    ('resnet20', False)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_file: io.TextIOWrapper | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str | os.PathLike) -> Path:
        return self.path / name

    # -- finding runs -------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether this folder is a run folder: it holds ``config.json`` (written when training starts)."""
        return (self.path / CONFIG).is_file()

    @classmethod
    def find(cls, paths: Iterable[str | os.PathLike], *, evaluated: bool = False) -> tuple[list[RunFolder], list[str]]:
        """The run folders at or under ``paths`` (finished or not), and a note for each path that holds none.

        Each path is a run folder, a folder holding run folders at any depth (a sweep's root, the demo's
        folder), or a glob pattern of either. Folders that are not runs (no ``config.json``, e.g. a folder
        holding a summary of several runs) are looked through, never returned; a run folder is not looked
        into. Symbolic links to folders are followed, each folder visited once (a link cycle ends there).

        Args:
            paths: folders or glob patterns, in the order wanted.
            evaluated: only runs with a ``report.json`` (written by ``focalcal evaluate``).

        Returns:
            ``(runs, notes)``: the runs in the order of ``paths`` (sorted by path within each), each once
            even when several paths reach it (through links too); ``notes`` are one line each
            (``"PATH: why"``) for a path that does not exist or holds no (evaluated) run.
        """
        runs: list[RunFolder] = []
        notes: list[str] = []
        seen: set[tuple[int, int]] = set()  # (device, inode) of the runs returned
        for pattern in map(str, paths):
            matches = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
            if not matches:
                notes.append(f"{pattern}: no such file or folder")
            for match in matches:
                found = [r for r in _runs_under(Path(match)) if not evaluated or r.has_report()]
                if not found:
                    what = "no evaluated run (no report.json)" if evaluated else "no run folder (no config.json)"
                    notes.append(f"{match}: {what} at or under it")
                for run in found:
                    st = run.path.stat()
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        runs.append(run)
        return runs, notes

    # -- the lock -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the folder's exclusive lock for the ``with`` block (re-entrant within one object).

        On taking it, removes the temporary files that interrupted writes (a killed ``train``, ``evaluate``
        or ``ood``) left in the folder (:meth:`remove_temp_files`): no other process can be writing them.
        A folder that taking the lock created (with any parents it created) is removed again on release when
        nothing but the lock file was written into it (a command that failed first leaves no empty folder).

        Raises:
            RunLockedError: another process holds it (the message names its PID).
            RunFolderError: the path is a file, not a folder.
        """
        if self._lock_file is not None:  # already held by this object
            yield self
            return
        self.check_not_file()
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]  # innermost first
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunLockedError(
                f"{self.path} is in use by another focalcal process (PID {holder}); wait for it to finish, "
                "stop it, or choose another folder"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f
        try:
            self.remove_temp_files()
            yield self
        finally:
            self._lock_file = None
            unused = bool(created) and [p.name for p in self.path.iterdir()] == [LOCK.name]
            if unused:  # unlinked while still held: a process that opens .lock from now on makes a new file
                (self.path / LOCK).unlink(missing_ok=True)
            f.close()  # closing releases the flock
            for folder in created if unused else []:
                try:
                    folder.rmdir()  # only while empty: whatever another process put there stays
                except OSError:
                    break

    def check_not_file(self) -> None:
        """Raise :class:`~focalcal.errors.RunFolderError` when the path is a file (``evaluate run/config.json``):
        a run folder is the folder ``focalcal train --out`` wrote, the one holding ``config.json``."""
        if self.path.exists() and not self.path.is_dir():
            parent = self.path.parent
            hint = f" ({parent} is the run's folder)" if (parent / CONFIG).is_file() else ""
            raise RunFolderError(
                f"{self.path} is a file, not a run folder (the folder `focalcal train --out DIR` writes, holding "
                f"{CONFIG}): give a folder{hint}"
            )

    def remove_temp_files(self) -> list[Path]:
        """Delete temporary files left by interrupted atomic writes of any of the folder's files
        (``.NAME.XXXX.tmp``: ``.ood.json.*.tmp``, ``checkpoints/.last.pt.*.tmp``, ...); :meth:`lock` calls it.
        Returns the paths removed."""
        return remove_temp_files(self.path) + remove_temp_files(self.path / CHECKPOINT.parent)

    # -- configuration and provenance ---------------------------------------------------------------------
    def write_config(self, config: Mapping[str, Any]) -> None:
        self._write_json(CONFIG, dict(config))

    def read_config(self) -> dict[str, Any]:
        """``config.json``. Raises ``FileNotFoundError`` if absent, :class:`CheckpointError` if unreadable."""
        return self._read_json(CONFIG, fix="restore it from the checkpoint's config or start a new run")

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def append_provenance(self, session: Mapping[str, Any]) -> None:
        """Add one training session's record to ``provenance.json`` (a resumed run has several)."""
        sessions = self.read_provenance()
        self._write_json(PROVENANCE, {"sessions": [*sessions, dict(session)]})

    def read_provenance(self) -> list[dict[str, Any]]:
        if not (self.path / PROVENANCE).is_file():
            return []
        data = self._read_json(PROVENANCE, fix="delete it; it is rewritten on the next training session")
        return list(data.get("sessions", []))

    # -- the per-epoch log ------------------------------------------------------------------------------
    def append_log(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's record to ``log.jsonl`` (fsynced) and rewrite ``log.csv`` from the log."""
        try:
            with open(self.path / LOG, "a") as f:
                f.write(json.dumps(dict(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # a torn line is dropped on resume (truncate_log)
                raise disk_full(self.path / LOG) from None
            raise
        self._write_log_csv(self.read_log(tolerant=True))

    def read_log(self, *, tolerant: bool = False) -> list[dict[str, Any]]:
        """The ``log.jsonl`` records in epoch order; ``[]`` when there is no log.

        ``tolerant``: skip lines that are not JSON objects with an ``epoch`` (a line torn by a crash);
        otherwise such a line raises :class:`CheckpointError` naming it.
        """
        path = self.path / LOG
        if not path.is_file():
            return []
        records = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                int(rec["epoch"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                if tolerant:
                    continue
                raise CheckpointError(f"{path}, line {i}: not a log record ({exc}); delete the line") from None
            records.append(rec)
        return sorted(records, key=lambda r: int(r["epoch"]))

    def truncate_log(self, completed: int) -> None:
        """Keep the records of epochs ``<= completed`` (what the checkpoint holds); drop later and torn lines."""
        if not (self.path / LOG).is_file():
            return
        kept = [r for r in self.read_log(tolerant=True) if int(r["epoch"]) <= completed]
        atomic_write_text(self.path / LOG, "".join(json.dumps(r) + "\n" for r in kept))
        self._write_log_csv(kept)

    def _write_log_csv(self, records: list[dict[str, Any]]) -> None:
        """``log.csv``: the log's scalar fields (nested ones stay in ``log.jsonl`` only)."""
        columns = dict.fromkeys(k for rec in records for k, v in rec.items() if not isinstance(v, (dict, list)))
        atomic_write_csv(self.path / LOG_CSV, records, list(columns))

    # -- checkpoints ----------------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        """Whether training state exists (``checkpoints/last.pt`` or ``final.pt``)."""
        return (self.path / CHECKPOINT).exists() or (self.path / FINAL).exists()

    def has_final(self) -> bool:
        """Whether training finished: ``final.pt`` (the trained model) is there."""
        return (self.path / FINAL).is_file()

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        atomic_torch_save(dict(state), self.path / CHECKPOINT)

    def save_final(self, state: Mapping[str, Any]) -> None:
        atomic_torch_save(dict(state), self.path / FINAL)

    def load_state(self, name: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load ``checkpoints/last.pt`` or ``final.pt``, checking that it is a complete focalcal checkpoint.

        Raises:
            FileNotFoundError: the file does not exist.
            CheckpointError: the file is truncated, corrupt or not a focalcal checkpoint.
        """
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)  # no pickled code runs
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{path} is damaged ({reason})") from None
        missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
        if isinstance(state, dict) and not any(all(k in state for k in keys) for keys in _INPUT_KEYS):
            missing.append("modality")
        if missing:
            raise CheckpointError(f"{path} is not a focalcal checkpoint (missing {', '.join(missing)})")
        return state

    def load_trained(self, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path, str | None]:
        """The trained model's state: ``final.pt``, else ``checkpoints/last.pt`` (an unfinished or damaged run).

        Returns:
            ``(state, path, note)``; ``note`` says why ``last.pt`` was used instead of ``final.pt`` (None
            when ``final.pt`` was used).

        Raises:
            RunFolderError: no checkpoint at all, or every checkpoint present is damaged (names each).
        """
        problems = []
        for name in (FINAL, CHECKPOINT):
            if not (self.path / name).is_file():
                continue
            try:
                state = self.load_state(name, map_location)
            except CheckpointError as exc:
                problems.append(str(exc))
                continue
            note = None
            if name == CHECKPOINT:
                why = problems[0] if problems else f"{FINAL} is absent (the run has not finished)"
                note = f"using {name} (epoch {state['epoch']}): {why}"
            return state, self.path / name, note
        if problems:
            raise RunFolderError(
                "; ".join(problems) + ": no usable checkpoint; train it again (`focalcal train --overwrite`)"
            )
        raise RunFolderError(
            f"{self.path} holds no trained run (no {FINAL} or {CHECKPOINT}); train one with "
            "`focalcal train --out DIR` first"
        )

    # -- evaluation and OOD results ---------------------------------------------------------------------
    def write_report(self, report: Mapping[str, Any], markdown: str) -> None:
        self._write_json(REPORT, dict(report))
        atomic_write_text(self.path / REPORT_MD, markdown)

    def read_report(self) -> dict[str, Any]:
        return self._read_json(REPORT, fix="evaluate the run again (`focalcal evaluate RUN`)")

    def has_report(self) -> bool:
        return (self.path / REPORT).is_file()

    def write_logits(self, logits: Mapping[str, torch.Tensor]) -> None:
        atomic_torch_save({k: logits[k] for k in _LOGIT_KEYS}, self.path / LOGITS)

    def read_logits(self) -> dict[str, torch.Tensor]:
        """``logits.pt``: validation/test logits and labels saved by ``evaluate``."""
        path = self.path / LOGITS
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; evaluate the run with `focalcal evaluate {self.path}`")
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
            raise CheckpointError(f"{path} is damaged ({exc}); evaluate the run again") from None
        missing = [k for k in _LOGIT_KEYS if k not in saved]
        if missing:
            raise CheckpointError(f"{path} lacks {', '.join(missing)}; evaluate the run again")
        return saved

    def has_logits(self) -> bool:
        return (self.path / LOGITS).is_file()

    def write_ood(self, report: Mapping[str, Any], markdown: str) -> None:
        self._write_json(OOD, dict(report))
        atomic_write_text(self.path / OOD_MD, markdown)

    def read_ood(self) -> dict[str, Any]:
        return self._read_json(OOD, fix="score the run again (`focalcal ood RUN --ood SET`)")

    def has_ood(self) -> bool:
        return (self.path / OOD).is_file()

    def save_figure(self, fig, name: str | os.PathLike) -> Path:
        """Save a matplotlib figure as ``name`` (its suffix gives the format) inside the folder, atomically."""
        from ..plots import save_figure

        return save_figure(fig, self.path / name)[0]

    # -- starting again ---------------------------------------------------------------------------------
    def run_files(self) -> list[Path]:
        """The files and folders present here that a run writes (its training files, the derived ones,
        ``tensorboard/``, ``wandb/``), relative to the folder, sorted: what :meth:`clear` would remove."""
        named = [rel for rel in (*TRAINING_FILES, TENSORBOARD, WANDB) if (self.path / rel).exists()]
        derived = [p.relative_to(self.path) for pattern in DERIVED_GLOBS for p in self.path.glob(pattern)]
        return sorted({*named, *derived})

    def clear(self) -> None:
        """Remove the training files and everything derived from them (``--overwrite``); keeps the lock.

        Raises:
            RunFolderError: the folder is not a run (no ``config.json`` or checkpoint) yet holds files named
                like a run's (the user's own ``report.json``, say): nothing is removed.
        """
        if not (self.is_run() or self.has_checkpoint()) and self.run_files():
            raise RunFolderError(
                f"{self.path} is not a focalcal run (no {CONFIG} or checkpoint) but holds "
                f"{', '.join(map(str, self.run_files()))}; nothing was removed: choose a new or empty folder"
            )
        for rel in TRAINING_FILES:
            (self.path / rel).unlink(missing_ok=True)
        self.clear_derived()
        for folder in (TENSORBOARD, WANDB):
            if (self.path / folder).is_dir():
                shutil.rmtree(self.path / folder)

    def clear_derived(self) -> None:
        for pattern in DERIVED_GLOBS:
            for p in self.path.glob(pattern):
                p.unlink(missing_ok=True)

    # -- helpers --------------------------------------------------------------------------------------
    def _write_json(self, name: Path, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(obj, indent=2) + "\n")

    def _read_json(self, name: Path, *, fix: str) -> dict[str, Any]:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is damaged (not valid JSON: {exc}); {fix}") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} is damaged (not a JSON object); {fix}")
        return data
