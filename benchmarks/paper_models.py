"""What the paper's tables cost: per network, the FLOPs per training image, the engine's measured rate on this
device, the time of one epoch of 45,000 images, and projections to the paper's 350-epoch runs.

The FLOPs are counted by ``torch.utils.flop_counter`` (forward + backward, 32x32 input). The rate is the
engine's own training step (the precision it chooses on this device, batch 128 or ``--batch``), timed on a
few steps after a warm-up. The GPU-hour estimate divides the FLOPs of the whole table by a stated sustained
rate (``--gpu-tflops``, default 100 TFLOP/s of bf16, about a third of an A100's or a tenth of an H100's
dense peak); it is an estimate, not a measurement.

    python benchmarks/paper_models.py [--steps 3] [--batch 32] [--gpu-tflops 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from train_throughput import flops_per_image, get_data

from focalcal.engine import TrainConfig, Trainer
from focalcal.engine.device import autocast, resolve_device

MODELS = ("resnet50", "resnet110_paper", "wrn26_10", "densenet121")
TRAIN, EPOCHS, LOSSES, DATASETS = 45_000, 350, 9, 2


def train_step(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One SGD step of the engine's model and loss, as in training (autocast, memory format already applied)."""
    with autocast(trainer.device, trainer.amp):
        out = trainer.step_model(x)
    loss = trainer.loss_fn(out, y)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per network")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gpu-tflops", type=float, default=100.0, help="sustained GPU rate assumed for the estimate")
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(f"# {device}; batch {args.batch}; timed on {args.steps} steps after one warm-up step")
    print(
        f"{'model':16s} {'GFLOP/img':>10s} {'img/s':>8s} {'precision':>22s} {'epoch (45k)':>12s} "
        f"{'350 epochs':>11s} {'GPU-h/run (est.)':>17s}"
    )
    total_flops = 0.0
    for name in MODELS:
        fpi = flops_per_image(name)
        data = get_data(args.batch * (args.steps + 1))
        cfg = TrainConfig(
            model=name,
            loss="flsd53",
            batch_size=args.batch,
            device=str(device),
            epochs=1,
            dynamics_train_size=0,
            dynamics_test_size=0,
        )
        trainer = Trainer(cfg, Path("/tmp/focalcal-paper-models"), data=data, progress=False)
        loader = trainer.train_loader
        batches = list(loader.epoch(0))
        train_step(trainer, *batches[0])
        t0 = time.perf_counter()
        for x, y in batches[1 : args.steps + 1]:
            train_step(trainer, x, y)
        rate = args.steps * args.batch / (time.perf_counter() - t0)
        epoch_h = TRAIN / rate / 3600
        run_flops = fpi * TRAIN * EPOCHS
        total_flops += run_flops * LOSSES * DATASETS
        prec = f"{'bf16' if trainer.amp else 'fp32'}{'+channels_last' if trainer.channels_last else ''}"
        print(
            f"{name:16s} {fpi / 1e9:10.2f} {rate:8.1f} {prec:>22s} {epoch_h:11.2f}h {epoch_h * EPOCHS:10.0f}h "
            f"{run_flops / (args.gpu_tflops * 1e12) / 3600:17.2f}"
        )
    print(
        f"\nestimate: the paper's CIFAR-10 and CIFAR-100 tables ({len(MODELS)} networks x {LOSSES} losses x "
        f"{DATASETS} datasets x 1 seed, 350 epochs, training steps only) need {total_flops:.3g} FLOP, about "
        f"{total_flops / (args.gpu_tflops * 1e12) / 3600:.0f} GPU-hours at a sustained {args.gpu_tflops:g} TFLOP/s"
    )


if __name__ == "__main__":
    main()
