"""Score a trained run on OOD and shifted sets, before and after temperature scaling, and write the results.

The protocol (the paper's Sec. 5 OOD experiment, extended):

1. Validation and test logits come from the run folder's ``logits.pt`` (written by ``focalcal evaluate``)
   when it is at least as new as the checkpoint and has the run's class count; otherwise they are
   recomputed from the run's data splits.
2. The temperature is fitted on the validation split only, with ``TemperatureScaling(method=ts_method)``
   (``"nll"`` by default) — the same fit as ``focalcal evaluate``.
3. The in-distribution set is the run's test split; each OOD/shifted set (:func:`focalcal.data.ood.
   load_ood_sets`) is passed through the model with the run's *training* normalisation (``run_logits``).
4. For every score (entropy, MSP, energy; OOD = positive, higher = more OOD) and for the logits before and
   after dividing by T: AUROC, AUPR-in, AUPR-out, FPR at 95% TPR. For labelled shifted sets of the run's
   own dataset (CIFAR-10-C for a CIFAR-10 run): the calibration summary before and after T.

Files written into the run folder by :func:`write_ood`: ``ood.json`` (always; the full report),
``ood.md`` (tables), ``ood_roc_<score>.png`` (one ROC panel per set, before and after TS) and, when the
folder has a ``report.json``, the same report under its ``"ood"`` key (``ood.json`` stays the reference:
a later ``focalcal evaluate`` rewrites ``report.json`` without that key).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..calibration import TemperatureScaling
from ..data import DataSplits
from ..data.ood import load_ood_sets
from ..metrics import calibration_summary
from ..metrics.ood import SCORES, TPR_LEVEL, ood_metrics, ood_roc_curve, ood_scores
from ..plots import save_figure
from ..plots.roc import roc_grid
from .checkpoint import atomic_write_bytes, write_json
from .config import TrainConfig
from .evaluate import LoadedRun, load_run, run_logits
from .report import markdown_table
from .trainer import CHECKPOINT, FINAL, prepare_data

LOGITS = Path("logits.pt")
REPORT = Path("report.json")
OOD_JSON = Path("ood.json")
OOD_MD = Path("ood.md")
STAGES = ("before", "after")
CONVENTION = (
    "OOD is the positive class and a higher score means more OOD: entropy = softmax entropy (nats), "
    "msp = 1 - max softmax probability, energy = -logsumexp(logits) (Liu et al. 2020, T=1). 'after' scores "
    "are computed from logits / T. FPR@95%TPR: fraction of in-distribution inputs flagged when 95% of OOD "
    "inputs are."
)


def roc_png(score: str) -> Path:
    return Path(f"ood_roc_{score}.png")


def _with_data_dir(config: TrainConfig, data_dir: str | None) -> TrainConfig:
    return config if data_dir is None else TrainConfig.from_dict({**config.to_dict(), "data_dir": data_dir})


def _saved_logits(run_dir: Path, run: LoadedRun) -> tuple[dict[str, torch.Tensor] | None, str]:
    """``logits.pt`` if it belongs to the current checkpoint, with a note on why it was (not) used."""
    path = run_dir / LOGITS
    if not path.is_file():
        return None, f"computed ({LOGITS} absent)"
    ckpt = run_dir / FINAL if (run_dir / FINAL).exists() else run_dir / CHECKPOINT
    if path.stat().st_mtime < ckpt.stat().st_mtime:
        return None, f"computed ({LOGITS} is older than {ckpt.name})"
    saved = torch.load(path, map_location="cpu", weights_only=True)
    keys = ("val_logits", "val_labels", "test_logits", "test_labels")
    if not all(k in saved for k in keys) or saved["test_logits"].shape[1] != len(run.classes):
        return None, f"computed ({LOGITS} lacks {', '.join(keys)} for {len(run.classes)} classes)"
    return {k: saved[k] for k in keys}, str(LOGITS)


def _input_size(config: TrainConfig, data: DataSplits | None) -> int | None:
    """The model's input size: the run's images, else its ``image_size``, else 32 for CIFAR; None: unknown."""
    if data is not None:
        return int(data.test_images.shape[-1])
    if config.image_size:
        return int(config.image_size)
    return 32 if config.dataset in ("cifar10", "cifar100") else None


def _summaries(logits: torch.Tensor, labels: torch.Tensor, t: float, n_bins: int) -> dict[str, Any]:
    return {
        "before": calibration_summary(logits=logits, labels=labels, n_bins=n_bins),
        "after": calibration_summary(logits=logits / t, labels=labels, n_bins=n_bins),
    }


def _mean_scores(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(v.mean()) for k, v in scores.items()}


def score_run(
    run_dir: str | Path,
    sets: Sequence[str],
    *,
    data_dir: str | None = None,
    device: str = "auto",
    n_bins: int | None = None,
    ts_method: str = "nll",
    seed: int = 0,
    max_images: int | None = None,
    download: bool = False,
    scores: Sequence[str] = SCORES,
    echo: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """OOD detection and calibration-under-shift numbers of one run (see the module docstring).

    Args:
        run_dir: a trained run folder (``final.pt`` or ``checkpoints/last.pt``).
        sets: OOD/shifted set names for :func:`focalcal.data.ood.load_ood_set`, e.g.
            ``["fashion_mnist", "cifar10c:gaussian_noise:5"]``.
        data_dir: data root overriding the run's (used for the run's splits and for the OOD sets).
        device: ``auto``, ``cpu``, ``cuda``...
        n_bins: calibration bins (default: the run's, 15).
        ts_method: ``"nll"`` (default, as ``focalcal evaluate``) or ``"ece_grid"``.
        seed: seed of the corruptions and of ``max_images`` subsets.
        max_images: score at most this many images of each OOD set (a seeded subset).
        download: let torchvision download missing data.
        scores: OOD scores to compute (subset of ``entropy``, ``msp``, ``energy``).
        echo: called with one progress line per set (``None``: silent).

    Returns:
        ``(report, arrays)``: ``report`` is JSON-able (fractions; the structure of ``ood.json``);
        ``arrays`` holds the ROC curves ``{set: {score: {"before"|"after": (fpr, tpr)}}}`` for plotting.

    Raises:
        ValueError: no sets, or an unknown score; DataError: a set or the run's data is missing;
        FileNotFoundError: ``run_dir`` holds no trained run.
    """
    say = echo or (lambda _msg: None)
    names = list(dict.fromkeys(sets))
    if not names:
        raise ValueError("name at least one OOD set, e.g. --ood fashion_mnist")
    unknown = [s for s in scores if s not in SCORES]
    if unknown or not scores:
        raise ValueError(f"unknown or no OOD scores {unknown}; choose from {', '.join(SCORES)}")
    run = load_run(run_dir, device=device)
    run_dir = Path(run_dir)
    config = _with_data_dir(run.config, data_dir)
    n_bins = n_bins or config.n_bins

    saved, source = _saved_logits(run_dir, run)
    data = None
    if saved is None or _input_size(config, None) is None:
        data = prepare_data(config, download=download)
    size = _input_size(config, data)
    # load every set before any scoring, so that a missing one fails fast
    loaded = load_ood_sets(names, config.data_dir, image_size=size, seed=seed, max_images=max_images, download=download)
    if saved is None:
        say(f"computing validation and test logits of {run_dir} ({source})")
        saved = {
            "val_logits": run_logits(run, data.val_images, data.val_labels),
            "val_labels": data.val_labels,
            "test_logits": run_logits(run, data.test_images, data.test_labels),
            "test_labels": data.test_labels,
        }
    scaler = TemperatureScaling(method=ts_method, n_bins=n_bins).fit(saved["val_logits"], saved["val_labels"])
    t = float(scaler.temperature)
    test_logits, test_labels = saved["test_logits"], saved["test_labels"]
    id_scores = {"before": ood_scores(test_logits, scores), "after": ood_scores(scaler.transform(test_logits), scores)}

    report: dict[str, Any] = {
        "run": run_dir.name,
        "dataset": config.dataset,
        "model": config.model,
        "loss": config.loss,
        "loss_options": config.loss_options,
        "epochs_trained": run.epoch,
        "positive_class": "ood",
        "convention": CONVENTION,
        "units": "fractions (auroc, aupr_in, aupr_out, fpr_at_95_tpr, error, ece, ...); nll and entropy in nats",
        "scores": list(scores),
        "n_bins": n_bins,
        "ts_method": ts_method,
        "temperature": t,
        "n_val": int(saved["val_labels"].shape[0]),
        "logits_source": source,
        "seed": seed,
        "max_images": max_images,
        "in_distribution": {
            "name": f"{config.dataset} test split",
            "n": int(test_labels.shape[0]),
            "calibration": _summaries(test_logits, test_labels, t, n_bins),
            "mean_scores": {s: _mean_scores(id_scores[s]) for s in STAGES},
        },
        "sets": {},
    }
    curves: dict[str, Any] = {}
    for ood in loaded:
        say(f"scoring {ood.name}: {len(ood)} images ({ood.description})")
        labels = ood.labels if ood.labels is not None else torch.zeros(len(ood), dtype=torch.int64)
        logits = run_logits(run, ood.images, labels)
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
            entry["calibration"] = _summaries(logits, ood.labels, t, n_bins)
        report["sets"][ood.name] = entry
        curves[ood.name] = {
            s: {st: ood_roc_curve(id_scores[st][s], out_scores[st][s]) for st in STAGES} for s in scores
        }
    report["figures"] = [str(roc_png(s)) for s in scores]
    return report, {"curves": curves}


# -- writing ---------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def ood_markdown(report: dict[str, Any], title: str) -> str:
    """The tables of ``ood.md``: detection with entropy, AUROC of every score, calibration under shift."""
    t = report["temperature"]
    sets = report["sets"]
    lines = [
        f"# {title}",
        "",
        f"- dataset `{report['dataset']}`, model `{report['model']}`, loss `{report['loss']}`, "
        f"{report['epochs_trained']} epochs; in-distribution: {report['in_distribution']['name']} "
        f"({report['in_distribution']['n']} images)",
        f"- temperature T = {t:.3f}, fitted on the validation split ({report['n_val']} images) by "
        f"`{report['ts_method']}`; logits: {report['logits_source']}",
        f"- {report['convention']}",
        "",
        "## Detection with softmax entropy (the paper's score), in %",
        "",
        "| set | kind | N | AUROC before | AUROC after | AUPR-in before | AUPR-in after | AUPR-out before"
        " | AUPR-out after | FPR@95%TPR before | FPR@95%TPR after |",
        "|" + "---|" * 11,
    ]
    key = "entropy" if "entropy" in report["scores"] else report["scores"][0]
    for name, e in sets.items():
        d = e["detection"]
        cells = [_pct(d[st][key][m]) for m in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr") for st in STAGES]
        lines.append(f"| {name} | {e['kind']} | {e['n']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## AUROC % of every score (before -> after TS)",
        "",
        "| set | " + " | ".join(report["scores"]) + " |",
        "|" + "---|" * (len(report["scores"]) + 1),
    ]
    for name, e in sets.items():
        d = e["detection"]
        cells = [f"{_pct(d['before'][s]['auroc'])} -> {_pct(d['after'][s]['auroc'])}" for s in report["scores"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    shifted = [(n, e) for n, e in sets.items() if "calibration" in e]
    if shifted:
        rows = []
        for name, cal in [(report["in_distribution"]["name"], report["in_distribution"]["calibration"])] + [
            (n, e["calibration"]) for n, e in shifted
        ]:
            rows += [(f"{name}, before TS", cal["before"]), (f"{name}, after TS", cal["after"])]
        lines += [
            "",
            "## Calibration under dataset shift",
            "",
            markdown_table(rows, "set"),
            "",
            "Error and calibration errors in %, NLL in nats, Brier score as a fraction; the same T "
            "(fitted on clean validation data) is applied to every set.",
        ]
    lines += ["", *[f"![ROC {s}]({f})" for s, f in zip(report["scores"], report["figures"])], ""]
    return "\n".join(lines)


def write_ood(run_dir: str | Path, report: dict[str, Any], arrays: dict[str, Any]) -> list[Path]:
    """Write ``ood.json``, ``ood.md``, ``ood_roc_<score>.png`` and the ``"ood"`` key of an existing
    ``report.json`` into ``run_dir``; returns the paths written."""
    run_dir = Path(run_dir)
    write_json(run_dir / OOD_JSON, report)
    md = ood_markdown(report, f"OOD and dataset-shift evaluation of {run_dir.name}").encode()
    atomic_write_bytes(run_dir / OOD_MD, lambda f: f.write(md))
    paths = [run_dir / OOD_JSON, run_dir / OOD_MD]
    t = report["temperature"]
    for score in report["scores"]:
        panels = []
        for name, by_score in arrays["curves"].items():
            det = report["sets"][name]["detection"]
            curves = {
                f"{st} TS{f' (T={t:.2f})' if st == 'after' else ''}: AUROC {_pct(det[st][score]['auroc'])}%": by_score[
                    score
                ][st]
                for st in STAGES
            }
            panels.append((name, curves))
        fig = roc_grid(
            panels, tpr_level=TPR_LEVEL, suptitle=f"{report['loss']} ({report['dataset']} test vs OOD): {score} score"
        )
        paths += save_figure(fig, run_dir / roc_png(score))
    if (run_dir / REPORT).is_file():
        full = json.loads((run_dir / REPORT).read_text())
        full["ood"] = report
        write_json(run_dir / REPORT, full)
        paths.append(run_dir / REPORT)
    return paths
