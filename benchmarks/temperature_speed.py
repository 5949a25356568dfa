"""Fitting time of temperature scaling on 5,000 x 100 validation logits (a CIFAR-100-sized validation split).

Compares, in one run on the same logits:

* ``TemperatureScaling(method="nll")``: safeguarded Newton on the convex NLL in 1/T (float64);
* a brute-force 100-point NLL grid over T (what a grid search of the NLL would cost);
* ``TemperatureScaling(method="ece_grid")``: the paper's 100-point ECE grid (0.1 .. 10.0);
* every other registered calibrator, for scale.

Also checks that the Newton fit is at least as good as the best point of a 1e-3 grid.

Usage: ``PYTHONPATH=src python benchmarks/temperature_speed.py [--n 5000] [--k 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from focalcal.calibration import TemperatureScaling, available_calibrators, build_calibrator


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, args.k, (args.n,), generator=g)
    z = torch.randn(args.n, args.k, generator=g)
    right = torch.rand(args.n, generator=g) < 0.75
    target = torch.where(right, y, torch.randint(0, args.k, (args.n,), generator=g))
    z[torch.arange(args.n), target] += 3.0
    z *= 2.5  # overconfident: optimal T > 1
    print(
        f"validation logits {args.n} x {args.k} float32, torch threads={torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )

    t_nll, ts = _best(lambda: TemperatureScaling("nll").fit(z, y), args.repeats)

    def nll_grid():
        temps = [i / 10 for i in range(1, 101)]
        vals = [float(torch.nn.functional.cross_entropy(z.double() / t, y)) for t in temps]
        return temps[min(range(100), key=vals.__getitem__)]

    t_grid, t_grid_best = _best(nll_grid, args.repeats)
    t_ece, ts_ece = _best(lambda: TemperatureScaling("ece_grid").fit(z, y), args.repeats)

    fine = torch.arange(max(ts.temperature - 0.2, 0.01), ts.temperature + 0.2, 1e-3, dtype=torch.float64)
    fine_nll = torch.stack([torch.nn.functional.cross_entropy(z.double() / t, y) for t in fine])
    t_fine = float(fine[fine_nll.argmin()])

    print(f"{'method':38s} {'seconds':>8s}  result")
    print(
        f"{'TemperatureScaling(nll), Newton':38s} {t_nll:8.3f}  T={ts.temperature:.4f} "
        f"({ts.n_iter} iterations, converged={ts.converged}, at_bound={ts.at_bound}, NLL {ts.objective:.5f})"
    )
    print(f"{'100-point NLL grid (brute force)':38s} {t_grid:8.3f}  T={t_grid_best:.1f}")
    print(
        f"{'TemperatureScaling(ece_grid), paper':38s} {t_ece:8.3f}  T={ts_ece.temperature:.1f} "
        f"(ECE {ts_ece.objective:.4f} vs {ts_ece.objective_at_one:.4f} at T=1)"
    )
    print(
        f"\nNewton vs 1e-3 grid optimum: T {ts.temperature:.4f} vs {t_fine:.4f}; "
        f"NLL {ts.objective:.6f} vs {float(fine_nll.min()):.6f}"
    )
    print(
        f"Newton fit is {t_grid / t_nll:.1f}x faster than the 100-point NLL grid, "
        f"{t_ece / t_nll:.1f}x faster than the ECE grid\n"
    )

    for name in available_calibrators():
        if name in ("temperature", "identity"):
            continue
        t, cal = _best(lambda n=name: build_calibrator(n).fit(z, y), 1)
        extra = f"converged={cal.converged}" if hasattr(cal, "converged") else ""
        print(f"{'fit ' + name:38s} {t:8.3f}  {extra}")


if __name__ == "__main__":
    main()
