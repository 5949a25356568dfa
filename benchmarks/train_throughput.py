"""Training throughput: focalcal's engine against the standard pipeline, same model, batch and loss.

(a) the engine: uint8 data on the training device, batch augmentation there, fused normalisation,
    vectorised FLSD-53, no host-device sync inside the step; variants with channels_last / bfloat16 autocast;
(b) the baseline (benchmarks/baseline_pipeline.py): per-sample PIL transforms in a DataLoader, float32,
    FLSD-53 gamma picked per sample in a Python loop, as the paper's original code.

Prints images/second for each and the ratio engine/baseline, plus the model's FLOP rate (forward+backward,
counted by torch.utils.flop_counter) and its fraction of the device's peak where known.

    python benchmarks/train_throughput.py [--models resnet20,resnet50] [--steps 15] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from focalcal.data import DataError, load_dataset, make_splits
from focalcal.data.splits import DataSplits
from focalcal.engine import TrainConfig, Trainer
from focalcal.engine.device import resolve_device
from focalcal.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_pipeline import standard_loader, train_steps  # noqa: E402

# dense peak TFLOP/s by device-name fragment (bfloat16 tensor cores; float32 without TF32 is far lower)
CUDA_PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


def cpu_peak_gflops() -> float | None:
    """Rough fp32 peak of this CPU: cores x GHz x 32 FLOP/cycle (one AVX-512 FMA unit), if readable."""
    try:
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    except OSError:
        return None
    if not mhz:
        return None
    flags = open("/proc/cpuinfo").read()
    per_cycle = 32 if "avx512f" in flags else 16
    return len(mhz) * (sum(mhz) / len(mhz)) / 1000 * per_cycle


def flops_per_image(model_name: str, device: torch.device) -> float:
    model = build_model(model_name, 10).to(device)
    x = torch.randn(8, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 8


def get_data(n: int) -> DataSplits:
    try:
        data = load_dataset("cifar10")
        return make_splits(data, val_size=1000, train_size=n)
    except DataError as exc:
        print(f"# real CIFAR-10 not found ({exc}); using random uint8 images of the same shape")
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n + 1000, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n + 1000,), generator=g)
        from focalcal.data import ImageData

        return make_splits(
            ImageData("random", x, y, x[:100], y[:100], [str(i) for i in range(10)]), val_size=1000, train_size=n
        )


def time_engine(model_name, data, device, *, amp, channels_last, compile_=False, batch_size=128) -> float:
    cfg = TrainConfig(
        model=model_name,
        loss="flsd53",
        epochs=2,
        batch_size=batch_size,
        device=str(device),
        amp=amp,
        channels_last=channels_last,
        compile=compile_,
        dynamics_train_size=0,
        dynamics_test=False,
    )
    trainer = Trainer(cfg, Path("/tmp/focalcal-bench-run"), data=data, progress=False)
    trainer._train_epoch(0)  # warm-up (allocator, oneDNN/cuDNN algorithm choice, compile)
    _sync(device)
    t0 = time.perf_counter()
    trainer._train_epoch(1)
    _sync(device)
    return data.train_images.shape[0] / (time.perf_counter() - t0)


def time_baseline(model_name, data, device, *, num_workers, batch_size=128) -> float:
    torch.manual_seed(1)
    model = build_model(model_name, 10).to(device)
    loader = standard_loader(
        data.train_images, data.train_labels, data.mean, data.std, batch_size=batch_size, num_workers=num_workers
    )
    if device.type == "cuda":
        loader = _to_device(loader, device)
    steps = len(loader)
    train_steps(model, loader, max_steps=2)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    train_steps(model, loader, max_steps=steps)
    _sync(device)
    return data.train_images.shape[0] / (time.perf_counter() - t0)


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
    ap.add_argument("--steps", type=int, default=15, help="timed steps of batch 128 per measurement")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on CUDA")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(
        f"# torch {torch.__version__}, device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f" ({os.cpu_count()} CPUs, {torch.get_num_threads()} threads)"
        )
    )
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in CUDA_PEAK_BF16.items() if k in name), None)
        peak_unit, peak_val = "bf16 dense TFLOP/s", peak
    else:
        peak_unit, peak_val = "fp32 GFLOP/s (est.)", cpu_peak_gflops()
    print(f"# device peak: {peak_val} {peak_unit}")

    for model_name in args.models.split(","):
        steps = args.steps if model_name == "resnet20" or device.type == "cuda" else max(3, args.steps // 3)
        data = get_data(steps * 128)
        fpi = flops_per_image(model_name, torch.device("cpu"))
        rows = []
        for workers in (0, 2):
            rows.append(
                (
                    f"baseline (PIL DataLoader, {workers} workers, fp32, loop FLSD)",
                    time_baseline(model_name, data, device, num_workers=workers),
                )
            )
        variants = [(False, False), (False, True), (True, False), (True, True)]
        if device.type == "cpu" and model_name != "resnet20":
            variants = [(False, False), (True, True)]
        for amp, cl in variants:
            label = f"engine ({'bf16 autocast' if amp else 'fp32'}, {'channels_last' if cl else 'NCHW'})"
            rows.append((label, time_engine(model_name, data, device, amp=amp, channels_last=cl)))
        if args.compile:
            rows.append(
                (
                    "engine (bf16, channels_last, compiled)",
                    time_engine(model_name, data, device, amp=True, channels_last=True, compile_=True),
                )
            )
        base = max(r for label, r in rows if label.startswith("baseline"))
        print(
            f"\n## {model_name}, batch 128, FLSD-53, {data.train_images.shape[0]} images timed per row; "
            f"{fpi / 1e9:.3f} GFLOP per image (fwd+bwd)"
        )
        print(f"{'pipeline':62s} {'img/s':>9s} {'vs best baseline':>17s} {'model FLOP/s':>13s} {'of peak':>8s}")
        for label, rate in rows:
            flops = rate * fpi
            scale = 1e12 if device.type == "cuda" else 1e9
            frac = f"{100 * flops / scale / peak_val:.1f}%" if peak_val else "n/a"
            unit = "T" if device.type == "cuda" else "G"
            print(f"{label:62s} {rate:9.1f} {rate / base:16.2f}x {flops / scale:11.1f} {unit} {frac:>8s}")


if __name__ == "__main__":
    main()
