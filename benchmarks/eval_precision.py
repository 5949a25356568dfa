"""Does bfloat16 inference change the per-epoch monitoring numbers? Trained models, both precisions, compared.

For each run folder given, restores its trained model and computes, on ``--n`` test images (a seeded random
subset, the same for every run), the numbers the engine logs every epoch (validation NLL / ECE / accuracy,
and the dynamics passes' NLL and entropy split by correct / incorrect predictions) from float32 logits and
from bfloat16-autocast logits; prints each
difference, the largest over runs, and the two passes' times. The report, the calibrators and OOD scoring
always use float32 logits; this measures whether the per-epoch passes may run in the training precision.

    python benchmarks/eval_precision.py runs/cpu/cifar10/resnet20/*/seed1 [--n 2000]
"""

from __future__ import annotations

import argparse
import time

import torch

from focalcal.data import load_dataset
from focalcal.data.loader import DeviceLoader
from focalcal.engine.device import cpu_has_native_bf16
from focalcal.engine.dynamics import split_nll_entropy
from focalcal.engine.precision import eval_channels_last
from focalcal.engine.trainer import predict_logits
from focalcal.eval_settings import resolve_settings
from focalcal.evaluation.evaluate import load_run
from focalcal.metrics import calibration_summary

KEYS = ("nll", "ece", "error", "nll_correct", "nll_incorrect", "entropy_correct", "entropy_incorrect")


def numbers(logits: torch.Tensor, labels: torch.Tensor, n_bins: int) -> dict[str, float]:
    s = calibration_summary(logits=logits, labels=labels, n_bins=n_bins)
    d = split_nll_entropy(logits, labels)
    return {"nll": s["nll"], "ece": 100 * s["ece"], "error": 100 * s["error"], **{k: d[k] for k in KEYS[3:]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (trained)")
    ap.add_argument("--n", type=int, default=2000, help="test images per run")
    args = ap.parse_args()
    print(f"# bf16 native on this CPU: {cpu_has_native_bf16()}; {args.n} test images per run")
    print("# ECE and error in %, NLL and entropy in nats; delta = bf16 - fp32")
    print(f"{'run':44s} " + " ".join(f"{k:>17s}" for k in KEYS) + f" {'fp32 s':>7s} {'bf16 s':>7s}")
    worst = dict.fromkeys(KEYS, 0.0)
    data_cache: dict[tuple, object] = {}
    t32 = t16 = 0.0
    for path in args.runs:
        run = load_run(path, device="cpu")
        c = run.config
        key = (c.dataset, c.data_dir, c.image_size)  # the data the run was trained on
        if key not in data_cache:
            data = load_dataset(c.dataset, c.data_dir, image_size=c.image_size)
            # a seeded random subset: the test split is stored class by class, so its first n are few classes
            pick = torch.randperm(len(data.test_labels), generator=torch.Generator().manual_seed(0))[: args.n]
            data_cache[key] = data.test_images[pick], data.test_labels[pick]
        images, labels = data_cache[key]
        loader = DeviceLoader(
            images,
            labels,
            batch_size=resolve_settings(run.config).batch(run.device),
            mean=run.mean,
            std=run.std,
            device=run.device,
            channels_last=eval_channels_last(run.device, run.model, tuple(images.shape[1:])),
        )
        t0 = time.perf_counter()
        fp32 = numbers(predict_logits(run.model, loader), labels, run.config.n_bins)
        t1 = time.perf_counter()
        bf16 = numbers(predict_logits(run.model, loader, amp=True), labels, run.config.n_bins)
        t2 = time.perf_counter()
        t32, t16 = t32 + t1 - t0, t16 + t2 - t1
        cells = []
        for k in KEYS:
            a, b = fp32[k], bf16[k]
            delta = None if a is None or b is None else b - a
            if delta is not None:
                worst[k] = max(worst[k], abs(delta))
            cells.append(f"{'-':>17s}" if delta is None else f"{a:8.3f} {delta:+8.4f}")
        label = "/".join(str(path).rstrip("/").split("/")[-3:])
        print(f"{label:44s} " + " ".join(cells) + f" {t1 - t0:7.2f} {t2 - t1:7.2f}")
    print(f"{'largest |delta|':44s} " + " ".join(f"{worst[k]:17.4f}" for k in KEYS))
    print(f"# inference time, all runs: fp32 {t32:.1f} s, bf16 {t16:.1f} s ({t32 / t16:.2f}x)")


if __name__ == "__main__":
    main()
