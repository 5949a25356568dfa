"""Forward+backward time of every registered loss (CIFAR-like batch: 128 x 10 and 128 x 100).

Usage: ``PYTHONPATH=src python benchmarks/losses_speed.py [--device cuda] [--repeats 200]``. Prints a table;
``validate=False`` is used so that the label check's host sync does not dominate GPU timings (the default
``validate=True`` costs one sync per call).
"""

from __future__ import annotations

import argparse
import time

import torch

from focalcal.losses import available_losses, build_loss


def _time(name: str, num_classes: int, device: torch.device, repeats: int) -> float:
    loss = build_loss(name, num_classes=num_classes, validate=False).to(device)
    logits = torch.randn(128, num_classes, device=device, requires_grad=True)
    labels = torch.randint(0, num_classes, (128,), device=device)
    if loss.needs_validation:
        loss.update_from_validation(logits.detach(), labels)
    for _ in range(10):  # warm-up
        loss(logits, labels).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        loss(logits, labels).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{'loss':<16}{'K=10 (us)':>12}{'K=100 (us)':>12}")
    for name in available_losses():
        t10 = _time(name, 10, device, args.repeats)
        t100 = _time(name, 100, device, args.repeats)
        print(f"{name:<16}{t10:>12.1f}{t100:>12.1f}")


if __name__ == "__main__":
    main()
