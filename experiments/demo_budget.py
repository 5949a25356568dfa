"""Choose the demo's budget by a rule fixed before any calibration number is looked at.

Rule: for N in (8000, 4000, 2000) training images, first with the paper's augmentation then without, the
epoch count E is the largest whose cross-entropy run (training plus the per-epoch evaluation the demo does)
fits PER_RUN_SECONDS in float32 on this machine, timed on a 2-epoch probe. The demo budget is the first
(N, augmentation) at which cross-entropy ends with >= 99% accuracy on its whole, un-augmented training
subset. Only cross-entropy's train accuracy and the wall time decide; no calibration metric is computed.

    python experiments/demo_budget.py [--out runs/demo_budget]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from focalcal.data import DeviceLoader, load_dataset, make_splits
from focalcal.engine import TrainConfig, Trainer, predict_logits

PER_RUN_SECONDS = 240.0
TARGET_TRAIN_ACC = 0.99
CANDIDATES = [(n, aug) for n in (8000, 4000, 2000) for aug in (True, False)]


def config(n: int, aug: bool, epochs: int) -> TrainConfig:
    return TrainConfig(
        model="resnet20",
        loss="ce",
        epochs=epochs,
        train_size=n,
        val_size=1000,
        augment=aug,
        amp=False,
        channels_last=True,
        dynamics_train_size=1000,
        dynamics_test=True,
        device="cpu",
    )


def probe_seconds_per_epoch(n: int, aug: bool, splits, out: Path) -> float:
    """Wall seconds of the second epoch of a 2-epoch run (the first one warms up)."""
    Trainer(config(n, aug, 2), out / f"probe_{n}_{aug}", data=splits, progress=False).fit(overwrite=True)
    lines = [json.loads(s) for s in (out / f"probe_{n}_{aug}" / "log.jsonl").read_text().splitlines()]
    return lines[-1]["seconds"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/demo_budget")
    args = p.parse_args()
    out = Path(args.out)
    data_all = load_dataset("cifar10")
    splits = {n: make_splits(data_all, val_size=1000, train_size=n, test_size=1000) for n in {c[0] for c in CANDIDATES}}
    # phase 1, timing only (run it on an otherwise idle machine): every candidate's epoch count
    epochs = {}
    for n, aug in CANDIDATES:
        per_epoch = probe_seconds_per_epoch(n, aug, splits[n], out)
        epochs[(n, aug)] = (int(PER_RUN_SECONDS // per_epoch), per_epoch)
        print(f"probe N={n} augment={aug}: {per_epoch:.1f} s/epoch -> {epochs[(n, aug)][0]} epochs", flush=True)
    # phase 2: cross-entropy's train accuracy at that budget, in the rule's order (timing no longer matters)
    rows = []
    for n, aug in CANDIDATES:
        e, per_epoch = epochs[(n, aug)]
        t0 = time.perf_counter()
        tr = Trainer(config(n, aug, e), out / f"ce_{n}_{aug}", data=splits[n], progress=False, echo=print)
        tr.fit(overwrite=True)
        seconds = time.perf_counter() - t0
        d = splits[n]
        loader = DeviceLoader(d.train_images, d.train_labels, batch_size=1024, mean=d.mean, std=d.std)
        acc = float((predict_logits(tr.model, loader).argmax(1) == d.train_labels).float().mean())
        row = {
            "train_size": n,
            "augment": aug,
            "epochs": e,
            "seconds_per_epoch_probe": per_epoch,
            "run_seconds": seconds,
            "ce_train_accuracy": acc,
            "meets_rule": acc >= TARGET_TRAIN_ACC,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        if acc >= TARGET_TRAIN_ACC:
            break
    (out / "budget.json").write_text(
        json.dumps({"probes": {f"{n},{a}": v for (n, a), v in epochs.items()}, "runs": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
