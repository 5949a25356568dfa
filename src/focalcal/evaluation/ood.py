"""Score a trained run on OOD and shifted sets, before and after temperature scaling, and write the results.

The protocol (the paper's Sec. 5 OOD experiment, extended):

1. Validation and test logits come from the run folder's ``logits.pt`` (written by ``focalcal evaluate``)
   when it is at least as new as the checkpoint and has the run's class count; otherwise they are
   recomputed from the run's data splits.
2. The temperature is fitted on the validation split only, with the run's settings
   (:func:`~focalcal.eval_settings.run_settings`: its ``report.json``'s method and bins when it has been
   evaluated, else its ``config.json``'s) — the same fit as ``focalcal evaluate``.
3. The in-distribution set is the run's test split; each OOD/shifted set (:func:`focalcal.data.ood.
   load_ood_sets`) is passed through the model with the run's *training* normalisation (``run_logits``).
4. For every score (entropy, MSP, energy; OOD = positive, higher = more OOD) and for the logits before and
   after dividing by T: AUROC, AUPR-in, AUPR-out, FPR at 95% TPR. For labelled shifted sets of the run's
   own dataset (CIFAR-10-C for a CIFAR-10 run): the calibration summary before and after T.

The numbers are computed here; :mod:`focalcal.evaluation.ood_report` renders them and writes ``ood.json``
(the report, with the ROC curves thinned to at most :data:`ROC_POINTS` points), ``ood.md`` and
``ood_roc_<score>.png`` into the run folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import DATASET_FACTS
from ..data.ood import check_disjoint, load_ood_sets
from ..engine.runfolder import LOGITS, RunFolder
from ..engine.trainer import prepare_data
from ..errors import CheckpointError, InputError
from ..eval_settings import EvalSettings, run_settings
from ..metrics.ood import SCORES, ood_metrics, ood_roc_curve, ood_scores
from .evaluate import LoadedRun, load_run, run_logits

STAGES = ("before", "after")
#: ROC curves are stored in ood.json thinned to at most this many points (for the comparison figures).
ROC_POINTS = 400
CONVENTION = (
    "OOD is the positive class and a higher score means more OOD: entropy = softmax entropy (nats), "
    "msp = 1 - max softmax probability, energy = -logsumexp(logits) (Liu et al. 2020, T=1). 'after' scores "
    "are computed from logits / T. FPR@95%TPR: fraction of in-distribution inputs flagged when 95% of OOD "
    "inputs are."
)


def _saved_logits(run: RunFolder, loaded: LoadedRun) -> tuple[dict[str, torch.Tensor] | None, str]:
    """``logits.pt`` if it belongs to the checkpoint in use, with a note on why it was (not) used."""
    if not run.has_logits():
        return None, f"computed ({LOGITS} absent)"
    if (run / LOGITS).stat().st_mtime < loaded.checkpoint.stat().st_mtime:
        return None, f"computed ({LOGITS} is older than {loaded.checkpoint.name})"
    try:
        saved = run.read_logits()
    except CheckpointError as exc:
        return None, f"computed ({exc})"
    if saved["test_logits"].shape[1] != len(loaded.classes):
        return None, f"computed ({LOGITS} does not have {len(loaded.classes)} classes)"
    return saved, str(LOGITS)


def _summaries(logits: torch.Tensor, labels: torch.Tensor, t: float, settings: EvalSettings) -> dict[str, Any]:
    return {"before": settings.summary(logits, labels), "after": settings.summary(logits / t, labels)}


def _thin(curve: tuple[np.ndarray, np.ndarray]) -> dict[str, list[float]]:
    fpr, tpr = curve
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 6) for v in fpr], "tpr": [round(float(v), 6) for v in tpr]}


def _mean_scores(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in scores.items()}


def score_run(
    run_dir: str | Path,
    sets: Sequence[str],
    *,
    data_dir: str | None = None,
    device: str = "auto",
    n_bins: int | None = None,
    ts_method: str | None = None,
    seed: int = 0,
    max_images: int | None = None,
    download: bool = False,
    scores: Sequence[str] = SCORES,
    echo: Callable[[str], None] | None = None,
    eval_batch_size: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """OOD detection and calibration-under-shift numbers of one run (see the module docstring).

    Args:
        run_dir: a trained run folder (``final.pt`` or ``checkpoints/last.pt``).
        sets: OOD/shifted set names for :func:`focalcal.data.ood.load_ood_set`, e.g.
            ``["fashion_mnist", "cifar10c:gaussian_noise:5"]``.
        data_dir: data root overriding the run's (used for the run's splits and for the OOD sets).
        device: ``auto``, ``cpu``, ``cuda``...
        n_bins: calibration bins (default: the run's, :func:`~focalcal.eval_settings.run_settings`: its
            ``report.json``'s when it has one, else its ``config.json``'s; the bin rule is always the run's).
        ts_method: ``"nll"`` or ``"ece_grid"``; default: the run's (as for ``n_bins``: the report's fit).
        seed: seed of the corruptions and of ``max_images`` subsets.
        max_images: score at most this many images of each OOD set (a seeded subset).
        download: let torchvision download missing data.
        scores: OOD scores to compute (subset of ``entropy``, ``msp``, ``energy``).
        echo: called with one progress line per set (``None``: silent).
        eval_batch_size: inference batch (default: the run's, else the device's default; speed only).

    Returns:
        ``(report, arrays)``: ``report`` is JSON-able (fractions; the structure of ``ood.json``, with each
        set's thinned ROC curves under ``"roc"``); ``arrays`` holds the full ROC curves
        ``{set: {score: {"before"|"after": (fpr, tpr)}}}`` for plotting.

    Raises:
        InputError: no sets, or an unknown score; DataError: a set or the run's data is missing, or a set
        is the run's own test split; RunFolderError: ``run_dir`` holds no usable trained run.
    """
    say = echo or (lambda _msg: None)
    names = list(dict.fromkeys(sets))
    if not names:
        raise InputError("name at least one OOD set, e.g. --ood fashion_mnist")
    unknown = [s for s in scores if s not in SCORES]
    if unknown or not scores:
        raise InputError(f"unknown or no OOD scores {unknown}; choose from {', '.join(SCORES)}")
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    run = load_run(folder, device=device)
    # the run's settings (its report's, as evaluated, else its config's); n_bins, ts_method and the batch as given
    settings = run_settings(
        folder, config=run.config, n_bins=n_bins, ts_method=ts_method, eval_batch_size=eval_batch_size
    )
    batch = settings.batch(run.device)
    if run.modality is not None and run.modality.name != "images":
        raise InputError(
            f"{folder.path} was trained on {run.modality.name} ({run.config.dataset}); the OOD and shifted sets are "
            "images, so OOD scoring applies to image runs only"
        )
    if run.note:
        say(f"note: {run.note}")
    config = run.config if data_dir is None else run.config.replace(data_dir=data_dir)

    saved, source = _saved_logits(folder, run)
    facts = DATASET_FACTS.get(config.dataset)
    size = config.image_size or (facts.size if facts else None)  # the model's input size
    data = None
    if size is None:  # a user's image folder of native size: read it off the data
        data = prepare_data(config, download=download)
        size = int(data.test_images.shape[-1])
    # load every set before anything else, so that a missing one fails fast
    loaded = load_ood_sets(
        names,
        config.data_dir,
        image_size=size,
        seed=seed,
        max_images=max_images,
        download=download,
        in_distribution=config.dataset,
    )
    if data is None:
        data = prepare_data(config, download=download)  # its test split is checked against every set
    for ood in loaded:
        check_disjoint(ood, data.test_images, f"the run's {config.dataset} test split")
    if saved is None:
        say(f"computing validation and test logits of {folder.path} ({source})")
        saved = {
            "val_logits": run_logits(run, data.val_images, data.val_labels, batch),
            "val_labels": data.val_labels,
            "test_logits": run_logits(run, data.test_images, data.test_labels, batch),
            "test_labels": data.test_labels,
        }
    scaler = settings.temperature().fit(saved["val_logits"], saved["val_labels"])
    t = float(scaler.temperature)
    test_logits, test_labels = saved["test_logits"], saved["test_labels"]
    id_scores = {"before": ood_scores(test_logits, scores), "after": ood_scores(scaler.transform(test_logits), scores)}

    report: dict[str, Any] = {
        "run": folder.path.name,
        "dataset": config.dataset,
        "model": config.model,
        "loss": config.loss,
        "loss_options": config.loss_options,
        "epochs_trained": run.epoch,
        "positive_class": "ood",
        "convention": CONVENTION,
        "units": "fractions (auroc, aupr_in, aupr_out, fpr_at_95_tpr, error, ece, ...); nll and entropy in nats",
        "scores": list(scores),
        "n_bins": settings.n_bins,
        "bin_closed": settings.bin_closed,
        "ts_method": settings.ts_method,
        "temperature": t,
        "n_val": int(saved["val_labels"].shape[0]),
        "logits_source": source,
        "seed": seed,
        "max_images": max_images,
        "in_distribution": {
            "name": f"{config.dataset} test split",
            "n": int(test_labels.shape[0]),
            "calibration": _summaries(test_logits, test_labels, t, settings),
            "mean_scores": {s: _mean_scores(id_scores[s]) for s in STAGES},
        },
        "sets": {},
    }
    curves: dict[str, Any] = {}
    for ood in loaded:
        say(f"scoring {ood.name}: {len(ood)} images ({ood.description})")
        labels = ood.labels if ood.labels is not None else torch.zeros(len(ood), dtype=torch.int64)
        logits = run_logits(run, ood.images, labels, batch)
        out_scores = {"before": ood_scores(logits, scores), "after": ood_scores(scaler.transform(logits), scores)}
        entry: dict[str, Any] = {
            "kind": ood.kind,
            "description": ood.description,
            "n": len(ood),
            "detection": {st: {s: ood_metrics(id_scores[st][s], out_scores[st][s]) for s in scores} for st in STAGES},
            "mean_scores": {st: _mean_scores(out_scores[st]) for st in STAGES},
        }
        same_classes = ood.label_dataset == config.dataset
        if ood.labels is not None and same_classes and int(ood.labels.max()) < len(run.classes):
            entry["calibration"] = _summaries(logits, ood.labels, t, settings)
        curves[ood.name] = {
            s: {st: ood_roc_curve(id_scores[st][s], out_scores[st][s]) for st in STAGES} for s in scores
        }
        entry["roc"] = {s: {st: _thin(curves[ood.name][s][st]) for st in STAGES} for s in scores}
        report["sets"][ood.name] = entry
    return report, {"curves": curves}
