"""Speed of the calibration metrics on a large evaluation: 1,000,000 x 100 float32 logits by default.

Times, in one run on the same logits:

* ``floor``: one ``torch.softmax(logits, 1)`` pass (memory-bound lower bound: every metric needs it);
* ``ours``: ECE, AdaECE, classwise-ECE, MCE, NLL and error together (``calibration_summary``, which also
  computes the Brier score: a superset), and each metric function on its own;
* ``loop``: a straightforward per-bin Python loop like the original code's (each metric computes its own
  softmax, masks every bin, and classwise-ECE loops over classes and bins), run once.

Prints the times and the ratios ``ours / floor`` (target <= 3) and ``loop / ours`` (target >= 20), plus the
machine load (other processes on a shared machine slow everything down; compare ratios, not times).

Usage: ``PYTHONPATH=src python benchmarks/metrics_speed.py [--n 1000000] [--k 100] [--repeats 3] [--skip-loop]``
(memory: the logits take 400 MB and the loop baseline about 1.5 GB more).
"""

from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from focalcal import metrics as M


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --- the baseline: per-bin Python loops in the style of the original code -------------------------------
def _loop_ece(logits, labels, n_bins, norm="l1"):
    softmaxes = F.softmax(logits, dim=1)
    confidences, predictions = torch.max(softmaxes, 1)
    accuracies = predictions.eq(labels)
    bounds = torch.linspace(0, 1, n_bins + 1)
    out = torch.zeros(1)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        in_bin = confidences.gt(lo.item()) * confidences.le(hi.item())
        prop = in_bin.float().mean()
        if prop.item() > 0:
            gap = torch.abs(confidences[in_bin].mean() - accuracies[in_bin].float().mean())
            out = torch.maximum(out, gap) if norm == "max" else out + gap * prop
    return float(out)


def _loop_adaece(logits, labels, n_bins):
    softmaxes = F.softmax(logits, dim=1)
    confidences, predictions = torch.max(softmaxes, 1)
    accuracies = predictions.eq(labels)
    npt = len(confidences)
    edges = np.interp(np.linspace(0, npt, n_bins + 1), np.arange(npt), np.sort(confidences.numpy()))
    out = torch.zeros(1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = confidences.gt(float(lo)) * confidences.le(float(hi))
        prop = in_bin.float().mean()
        if prop.item() > 0:
            out += torch.abs(confidences[in_bin].mean() - accuracies[in_bin].float().mean()) * prop
    return float(out)


def _loop_classwise(logits, labels, n_bins):
    softmaxes = F.softmax(logits, dim=1)
    bounds = torch.linspace(0, 1, n_bins + 1)
    per_class = []
    for i in range(softmaxes.shape[1]):
        class_conf = softmaxes[:, i]
        in_class = labels.eq(i)
        sce = torch.zeros(1)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            in_bin = class_conf.gt(lo.item()) * class_conf.le(hi.item())
            prop = in_bin.float().mean()
            if prop.item() > 0:
                sce += torch.abs(class_conf[in_bin].mean() - in_class[in_bin].float().mean()) * prop
        per_class.append(sce)
    return float(torch.cat(per_class).mean())


def _loop_all(logits, labels, n_bins):
    return {
        "ece": _loop_ece(logits, labels, n_bins),
        "adaptive_ece": _loop_adaece(logits, labels, n_bins),
        "classwise_ece": _loop_classwise(logits, labels, n_bins),
        "mce": _loop_ece(logits, labels, n_bins, norm="max"),
        "nll": float(F.cross_entropy(logits, labels)),
        "error": float((logits.argmax(1) != labels).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--n-bins", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-loop", action="store_true", help="do not run the (slow) loop baseline")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.k, (args.n,), generator=g)
    logits = torch.randn(args.n, args.k, generator=g)
    logits.mul_(2.0)
    right = torch.rand(args.n, generator=g) < 0.8  # a classifier with ~80% accuracy, overconfident
    target = torch.where(right, labels, torch.randint(0, args.k, (args.n,), generator=g))
    logits[torch.arange(args.n), target] += 8.0

    print(
        f"logits {args.n} x {args.k} float32 ({logits.numel() * 4 / 2**20:.0f} MiB), n_bins={args.n_bins}, "
        f"torch threads={torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    kw = {"logits": logits, "labels": labels}
    floor = _best(lambda: torch.softmax(logits, 1), args.repeats)
    ours = _best(lambda: M.calibration_summary(**kw, n_bins=args.n_bins), args.repeats)
    floor = min(floor, _best(lambda: torch.softmax(logits, 1), args.repeats))  # interleaved: fair to both
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # our CPU kernel runs torch.get_num_threads() Python threads
    ours_1t = _best(lambda: M.calibration_summary(**kw, n_bins=args.n_bins), args.repeats)
    floor_1t = _best(lambda: torch.softmax(logits, 1), args.repeats)
    torch.set_num_threads(threads)
    ours = min(ours, _best(lambda: M.calibration_summary(**kw, n_bins=args.n_bins), args.repeats))
    singles = {
        "ece": _best(lambda: M.ece(**kw, n_bins=args.n_bins), 1),
        "adaptive_ece": _best(lambda: M.adaptive_ece(**kw, n_bins=args.n_bins), 1),
        "classwise_ece": _best(lambda: M.classwise_ece(**kw, n_bins=args.n_bins), 1),
        "mce": _best(lambda: M.mce(**kw, n_bins=args.n_bins), 1),
        "nll": _best(lambda: M.nll(**kw), 1),
        "error": _best(lambda: M.error_rate(**kw), 1),
    }
    summary = M.calibration_summary(**kw, n_bins=args.n_bins)

    print(f"\n{'what':44s} {'seconds':>9s}")
    print(f"{'floor: one torch.softmax pass':44s} {floor:9.3f}")
    print(f"{'ours: all six (+Brier), calibration_summary':44s} {ours:9.3f}")
    print(f"{'  the same with 1 thread':44s} {ours_1t:9.3f}")
    print(f"{'  floor with 1 thread':44s} {floor_1t:9.3f}")
    for name, t in singles.items():
        print(f"{'  ' + name + ' alone':44s} {t:9.3f}")
    print(f"\nours / floor = {ours / floor:.2f}x   (target <= 3; with 1 thread each: {ours_1t / floor_1t:.2f}x)")
    if not args.skip_loop:
        t0 = time.perf_counter()
        loop_vals = _loop_all(logits, labels, args.n_bins)
        loop = time.perf_counter() - t0
        print(f"{'loop baseline: all six, per-bin Python loops':44s} {loop:9.3f}")
        print(f"loop / ours = {loop / ours:.1f}x   (target >= 20)")
        print("\nvalues (ours vs loop; the loop bins (lo, hi] and its AdaECE uses interpolated edges):")
        for key in loop_vals:
            print(f"  {key:14s} {summary[key]:.6f}  {loop_vals[key]:.6f}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
