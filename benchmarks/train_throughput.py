"""Training throughput: focalcal's engine against the standard pipeline, same model, batch and loss.

(a) the engine: uint8 data on the training device, batch augmentation there, fused normalisation,
    vectorised FLSD-53, no host-device sync inside the step; fp32 and bfloat16-autocast variants, with and
    without channels_last, and torch.compile with ``--compile``;
(b) the baseline (benchmarks/baseline.py): per-sample PIL transforms in a DataLoader, float32,
    FLSD-53 gamma picked per sample in a Python loop, as the paper's original code.

Every row is timed once per round, ``--repeats`` rounds (so a slow spell of a shared machine hits all rows
alike); each row's ratio to the best baseline is taken within a round, and the medians over rounds are
printed with their ranges.
The model FLOP rate (forward+backward, counted by torch.utils.flop_counter) is given as a fraction of this
device's matmul rate in the same precision, measured here (a large fp32 / bf16 matmul), not a datasheet.

    python benchmarks/train_throughput.py [--models resnet20,resnet50] [--steps 20] [--repeats 3]
                                          [--device auto] [--compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from baseline import standard_loader, train_steps
from torch.utils.flop_counter import FlopCounterMode

from focalcal.data import DataError, ImageData, load_dataset, make_splits
from focalcal.data.splits import DataSplits
from focalcal.engine import TrainConfig, Trainer
from focalcal.engine.device import bf16_is_fast, resolve_device
from focalcal.models import build_model


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of a square matmul on ``device`` in ``dtype`` (the practical peak for dense layers)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(6):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def flops_per_image(model_name: str) -> float:
    model = build_model(model_name, 10)
    x = torch.randn(4, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 4


def get_data(n: int) -> DataSplits:
    try:
        return make_splits(load_dataset("cifar10"), val_size=1000, train_size=n)
    except DataError as exc:
        print(f"# real CIFAR-10 not found ({exc}); using random uint8 images of the same shape")
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n + 1000, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n + 1000,), generator=g)
        fake = ImageData("random", x, y, x[:100], y[:100], [str(i) for i in range(10)])
        return make_splits(fake, val_size=1000, train_size=n)


def engine_timer(model_name, data, device, *, amp, channels_last, compile_=False) -> Callable[[], float]:
    """Build a trainer, run one warm-up epoch (allocator, oneDNN/cuDNN choices, compile); return a timer of
    one more epoch in images/second."""
    cfg = TrainConfig(
        model=model_name,
        loss="flsd53",
        batch_size=128,
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        compile=compile_,
        dynamics_train_size=0,
        dynamics_test_size=0,
    )
    trainer = Trainer(cfg, Path("/tmp/focalcal-bench-run"), data=data, progress=False)
    if compile_ and not trainer.compiled:
        raise RuntimeError("torch.compile fell back to eager here: no compiled row to time")
    epoch = iter(range(1_000_000))
    trainer._train_epoch(next(epoch))

    def timed() -> float:
        _sync(device)
        t0 = time.perf_counter()
        trainer._train_epoch(next(epoch))
        _sync(device)
        return data.train_images.shape[0] / (time.perf_counter() - t0)

    return timed


def baseline_timer(model_name, data, device, *, num_workers) -> Callable[[], float]:
    torch.manual_seed(1)
    model = build_model(model_name, 10).to(device)
    loader = standard_loader(data.train_images, data.train_labels, data.mean, data.std, num_workers=num_workers)
    if device.type == "cuda":
        loader = _to_device(loader, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    train_steps(model, loader, max_steps=2, optimizer=opt)  # warm-up (and worker start-up)

    def timed() -> float:
        _sync(device)
        t0 = time.perf_counter()
        train_steps(model, loader, optimizer=opt)
        _sync(device)
        return data.train_images.shape[0] / (time.perf_counter() - t0)

    return timed


def _to_device(loader, device):
    class Moved:
        def __len__(self):
            return len(loader)

        def __iter__(self):
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return Moved()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet50")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of batch 128 per epoch (resnet20)")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per row, interleaved across rows")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (bf16 and fp32)")
    ap.add_argument("--profile", action="store_true", help="also profile the engine's default step of each model")
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"# torch {torch.__version__}, device {device} ({name}, {torch.get_num_threads()} threads)")
    bf16 = bf16_is_fast(device)
    # on CUDA, float32 convolutions run in TF32 by default (cuDNN): the float32 reference rate is measured alike
    tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32
    saved, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, tf32
    peak = {False: matmul_rate(device, torch.float32), True: matmul_rate(device, torch.bfloat16)}
    torch.backends.cuda.matmul.allow_tf32 = saved
    print(
        f"# measured matmul rate: {'tf32' if tf32 else 'fp32'} {peak[False] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak[True] / 1e9:.0f} GFLOP/s"
        f" (native bf16: {'yes' if bf16 else 'no'})"
    )

    for model_name in args.models.split(","):
        fpi = flops_per_image(model_name)
        # on a CPU a large model (ResNet-50: 32x ResNet-20's FLOPs) is timed on fewer steps, against the
        # 0-worker baseline only, in the two main precisions: the data pipeline is not its bottleneck there
        small = device.type == "cuda" or fpi < 1e9
        steps = args.steps if small else max(3, args.steps // 5)
        data = get_data(steps * 128)
        rows: list[tuple[str, bool, Callable[[], float]]] = []
        for workers in (0, 2) if small else (0,):
            label = f"baseline (PIL DataLoader, {workers} workers, fp32, loop FLSD)"
            rows.append((label, False, baseline_timer(model_name, data, device, num_workers=workers)))
        variants = (
            [(False, False), (False, True), (True, False), (True, True)] if small else [(False, False), (True, True)]
        )
        for amp, cl in variants:
            label = f"engine ({'bf16 autocast' if amp else 'fp32'}, {'channels_last' if cl else 'NCHW'})"
            rows.append((label, amp, engine_timer(model_name, data, device, amp=amp, channels_last=cl)))
        if args.compile:
            for amp in (False, True):
                label = f"engine ({'bf16 autocast' if amp else 'fp32'}, channels_last, torch.compile)"
                try:
                    timer = engine_timer(model_name, data, device, amp=amp, channels_last=True, compile_=True)
                except RuntimeError as exc:
                    print(f"# {label}: skipped ({exc})")
                    continue
                rows.append((label, amp, timer))
        rates: dict[str, list[float]] = {label: [] for label, _, _ in rows}
        ratios: dict[str, list[float]] = {label: [] for label, _, _ in rows}
        for _ in range(args.repeats):
            # one round times every row back to back; ratios are taken within the round, so a slow spell of
            # a shared machine (seen here: +-20% between minutes) moves the numerator and denominator alike
            for label, _, timed in rows:
                rates[label].append(timed())
            base = max(rates[label][-1] for label in rates if label.startswith("baseline"))
            for label in rates:
                ratios[label].append(rates[label][-1] / base)
        print(
            f"\n## {model_name}, batch 128, FLSD-53, {data.train_images.shape[0]} images per timed epoch, "
            f"median of {args.repeats} rounds; {fpi / 1e9:.3f} GFLOP per image (fwd+bwd)"
        )
        print(
            f"{'pipeline':62s} {'img/s':>8s} {'(min-max)':>12s} {'vs baseline':>11s} {'(min-max)':>12s}"
            f" {'GFLOP/s':>8s} {'of matmul rate':>15s}"
        )
        for label, amp, _ in rows:
            r, q = statistics.median(rates[label]), ratios[label]
            spread = f"({min(rates[label]):.0f}-{max(rates[label]):.0f})"
            ratio_spread = f"({min(q):.2f}-{max(q):.2f})"
            frac = f"{100 * r * fpi / peak[amp]:.0f}% {'bf16' if amp else ('tf32' if tf32 else 'fp32')}"
            print(
                f"{label:62s} {r:8.1f} {spread:>12s} {statistics.median(q):10.2f}x {ratio_spread:>12s}"
                f" {r * fpi / 1e9:8.1f} {frac:>15s}"
            )
        if args.profile:
            profile(model_name, device, amp=bf16, channels_last=True, steps=min(args.steps, 10))


def profile(model_name: str, device: torch.device, *, amp: bool, channels_last: bool, steps: int = 10) -> None:
    """Where the engine's training step spends its time: self CPU/CUDA time per operator group."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    data = get_data(steps * 128)
    timer = engine_timer(model_name, data, device, amp=amp, channels_last=channels_last)  # warmed up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profiler_quiet(), torch_profile(activities=activities) as prof:
        timer()
    groups = {
        "convolution": ("conv", "mkldnn_convolution"),
        "batch norm": ("batch_norm", "native_batch_norm"),
        "relu / add / mul (elementwise)": ("relu", "add", "mul", "threshold"),
        "loss / softmax": ("softmax", "log_softmax", "pow", "exp", "log"),
        "optimizer (SGD, clipping)": ("_foreach", "sgd", "norm", "clamp"),
        "data (crop/flip, normalise, copies)": ("index", "copy_", "to", "addcmul", "contiguous", "pad"),
    }
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = dict.fromkeys(groups, 0.0)
    other = 0.0
    for e in events:
        name = e.key.lower().removeprefix("aten::")
        for group, keys in groups.items():
            if any(name.startswith(k) or k in name for k in keys):
                shares[group] += e.self_cpu_time_total
                break
        else:
            other += e.self_cpu_time_total
    prec = f"{'bf16 autocast' if amp else 'fp32'}{', channels_last' if channels_last else ''}"
    print(f"\n## profile: {model_name}, engine {prec}, one epoch of {steps} steps (self CPU time by operator group)")
    for group, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"{group:40s} {100 * t / total:5.1f}%")
    print(f"{'other':40s} {100 * other / total:5.1f}%")


class torch_profiler_quiet:
    """Silence the profiler's warnings on machines without CUDA/Kineto support."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


if __name__ == "__main__":
    main()
