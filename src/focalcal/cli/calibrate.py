"""``focalcal calibrate``: calibrate any model's saved outputs, no training (see
:mod:`focalcal.calibration.compare` and :mod:`focalcal.calibration.outputs`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text
from ..calibration import Calibrator
from ..calibration.compare import Candidate, apply_calibrator, compare, default_candidates, markdown, rule_text
from ..calibration.outputs import KINDS, read_scores, read_val_test
from ..engine.runfolder import CONFIG, LOGITS, RunFolder, reliability_png
from ..errors import InputError
from ..plots import reliability_grid, save_figure
from .common import add_eval_settings_args, echo


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "calibrate",
        help="calibrate any model's saved validation/test outputs (logits or probabilities), no training",
        description="Fit every post-hoc calibrator on the validation outputs, report each metric before/after "
        "each on the test outputs with bootstrap 95% intervals, and save as JSON the calibrator chosen by the "
        "one-standard-error rule on 5-fold cross-validated NLL on validation (the simplest calibrator whose mean CV "
        "NLL is within one standard error over the folds of the lowest; --choose forces one). With --apply, "
        "calibrate new outputs with a saved calibrator. "
        "Formats: .pt / .npz (keys logits|probs|scores and labels|targets, or focalcal's val_logits/test_logits), "
        ".npy (scores; labels in a second .npy), .csv (one column per class, a label column, optionally a split "
        "column with val/test).",
    )
    c.add_argument("--kind", required=True, choices=KINDS, help="what the files hold: logits or probs (never guessed)")
    c.add_argument("--data", help=f"one file holding both splits (a split column, or focalcal's {LOGITS})")
    c.add_argument("--val", help="the validation outputs (fit the calibrators here)")
    c.add_argument("--test", help="the test outputs (report here)")
    c.add_argument("--val-labels", help="labels of --val when it is a .npy of scores")
    c.add_argument("--test-labels", help="labels of --test when it is a .npy of scores")
    c.add_argument("--label-column", default="label", help="CSV label column (default label)")
    c.add_argument("--split-column", default="split", help="CSV / file split column (default split)")
    c.add_argument(
        "--calibrators",
        help="comma-separated registry names (default: all; matrix and dirichlet up to "
        "20 classes; any estimated to take over 5 minutes for the input's size is skipped with a note, and fitted "
        "when named here); temperature:ece_grid for the paper's grid",
    )
    c.add_argument(
        "--choose",
        metavar="NAME",
        help="save this calibrator instead of the one the one-standard-error rule picks (a name as in "
        "--calibrators, e.g. temperature, temperature:ece_grid, dirichlet)",
    )
    add_eval_settings_args(c, defaults="fixed", flags=("n_bins", "bin_closed"))  # no run: the defaults
    c.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals (0: none)")
    c.add_argument("--seed", type=int, default=0, help="seed of the cross-validation folds and the bootstrap")
    c.add_argument(
        "--out", type=Path, help="output folder (report; not a run folder) or, with --apply, the output file"
    )
    c.add_argument("--apply", metavar="CALIBRATOR.json", help="calibrate --input with this saved calibrator")
    c.add_argument("--input", help="with --apply: the outputs to calibrate (labels not needed)")
    c.set_defaults(func=run)


def _candidates(text: str | None, num_classes: int) -> list[Candidate] | None:
    if not text:
        return None
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, method = item.partition(":")
        out.append(
            Candidate(name, {"method": method} if method else ({"method": "nll"} if name == "temperature" else {}))
        )
    return out or default_candidates(num_classes)


def _write_probs(path: Path, probs: np.ndarray) -> None:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        atomic_write_bytes(path, lambda f: np.save(f, probs))
    elif suffix == ".pt":
        atomic_torch_save({"probs": torch.from_numpy(probs)}, path)
    elif suffix == ".csv":
        head = ",".join(f"p{k}" for k in range(probs.shape[1]))
        body = "\n".join(",".join(f"{v:.8g}" for v in row) for row in probs)
        atomic_write_text(path, head + "\n" + body + "\n")
    else:
        raise InputError(f"--out {path}: write calibrated probabilities as .npy, .pt or .csv")


def load_calibrator(path: str | Path) -> tuple[Calibrator, str]:
    """The calibrator in a ``calibrator.json`` written by ``focalcal calibrate`` (or a bare
    ``Calibrator.state_dict()`` as JSON), and its label.

    Raises:
        InputError: the file is missing, unreadable, not JSON, or not a calibrator's state; the message names
            the file.
    """
    fix = "give the calibrator.json that `focalcal calibrate --out FOLDER` wrote"
    if not Path(path).exists():
        raise InputError(f"{path} does not exist; {fix}")
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a calibrator saved by focalcal calibrate ({exc}); {fix}") from None
    inner = state.get("calibrator", state) if isinstance(state, dict) else state
    try:
        cal = Calibrator.from_state_dict(inner)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, IndexError)) else str(exc)
        raise InputError(f"{path}: not a calibrator saved by focalcal calibrate ({reason}); {fix}") from None
    label = state.get("label") if isinstance(state, dict) else None
    return cal, str(label or cal.name)


def run(args: argparse.Namespace) -> int:
    if args.apply:
        if not args.input or not args.out:
            raise InputError("--apply needs --input (the outputs to calibrate) and --out (a .npy, .pt or .csv file)")
        cal, label = load_calibrator(args.apply)
        outputs = read_scores(args.input, args.kind, label_column=args.label_column)
        _write_probs(args.out, apply_calibrator(cal, outputs))
        echo(f"calibrated {outputs.n:,} rows with {label} -> {args.out}")
        return 0
    if not args.out:
        raise InputError("--out FOLDER is needed for the report")
    if RunFolder(args.out).is_run():  # its reliability diagrams are the run's own, written under its lock
        raise InputError(
            f"--out {args.out} is a run folder (it holds {CONFIG}), whose own reliability diagrams the calibration "
            "report would replace; choose another --out (nothing was written)"
        )
    if args.n_boot < 0:
        raise InputError(f"--n-boot must be >= 0 (bootstrap resamples; 0: no intervals), got {args.n_boot}")
    val, test = read_val_test(
        args.kind,
        data=args.data,
        val=args.val,
        test=args.test,
        val_labels=args.val_labels,
        test_labels=args.test_labels,
        label_column=args.label_column,
        split_column=args.split_column,
    )
    report, arrays = compare(
        val,
        test,
        candidates=_candidates(args.calibrators, val.num_classes),
        n_bins=args.n_bins,
        closed=args.bin_closed,
        n_boot=args.n_boot,
        seed=args.seed,
        choose=args.choose,
        echo=echo,
    )
    out = args.out
    chosen = report["calibrators"][report["chosen"]]
    atomic_write_text(out / "calibration.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "calibration.md", markdown(report))
    saved = {
        "label": chosen["label"],
        "criterion": report["criterion"],
        "calibrator": arrays["calibrators"][report["chosen"]].state_dict(),
    }
    atomic_write_text(out / "calibrator.json", json.dumps(saved, indent=2) + "\n")
    for stage, label in (("before", "uncalibrated"), ("after", chosen["label"])):
        metrics = {
            k: v["estimate"] for k, v in (report["uncalibrated"] if stage == "before" else chosen["test"]).items()
        }
        save_figure(
            reliability_grid([(f"test: {label}", arrays[f"bins_{stage}"], metrics)]), out / reliability_png(stage)
        )
    u, a = report["uncalibrated"], chosen["test"]
    echo(f"rule: {report['criterion']}")
    echo(f"  {rule_text(report)}")
    echo(f"intervals: {report['interval']}")
    echo(
        f"chosen: {chosen['label']} (validation CV NLL {chosen['val_cv_nll']:.4f}); test ECE "
        f"{100 * u['ece']['estimate']:.2f}% -> {100 * a['ece']['estimate']:.2f}%, NLL {u['nll']['estimate']:.4f} -> "
        f"{a['nll']['estimate']:.4f}; report {out / 'calibration.md'}, calibrator {out / 'calibrator.json'}"
    )
    return 0
