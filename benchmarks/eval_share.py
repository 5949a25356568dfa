"""How much of a training epoch goes to evaluation (the validation pass and the per-epoch dynamics passes).

Times, on this machine and in the engine's own settings (training in the measured precision, evaluation in
float32 with the measured memory format), a training step and an evaluation forward pass of one network,
per image, in interleaved rounds; then prints the share of an epoch that the evaluation passes take, averaged
over epochs, for the paper's protocol (45,000 training images, 5,000 validation images every epoch, and
``dynamics_train_size`` un-augmented training images plus ``dynamics_test_size`` test images every
``dynamics_every`` epochs), for a few choices of the dynamics settings; the ``paper`` preset's is marked.

    python benchmarks/eval_share.py [--model resnet50] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from focalcal.engine.config import TrainConfig
from focalcal.engine.device import autocast, resolve_device
from focalcal.engine.precision import eval_channels_last, resolve_precision
from focalcal.experiments.presets import base
from focalcal.losses import build_loss
from focalcal.models import build_model

TRAIN, VAL, TEST = 45_000, 5_000, 10_000
#: (dynamics_train_size, dynamics_test_size, dynamics_every); None: the whole test split, as in the config.
CHOICES = ((2000, None, 1), (2000, None, 2), (2000, 2000, 1), (1000, 1000, 1), (0, 0, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    model = build_model(args.model, 10).to(device)
    prec = resolve_precision(device, None, None, model=model)
    ecl = eval_channels_last(device, model)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss("flsd53", num_classes=10, validate=False).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    xt = x.contiguous(memory_format=torch.channels_last) if prec.channels_last else x
    xe = x.contiguous(memory_format=torch.channels_last) if ecl else x

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def train_step() -> float:
        sync()
        t0 = time.perf_counter()
        model.train()
        with autocast(device, prec.amp):
            out = model(xt)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        return (time.perf_counter() - t0) / args.batch

    @torch.inference_mode()
    def eval_step() -> float:
        sync()
        t0 = time.perf_counter()
        model.eval()
        model(xe).float()
        sync()
        return (time.perf_counter() - t0) / args.batch

    train_step(), eval_step()  # warm-up
    tr, ev = [], []
    for _ in range(args.rounds):
        tr.append(train_step())
        ev.append(eval_step())
    t_train, t_eval = sorted(tr)[len(tr) // 2], sorted(ev)[len(ev) // 2]
    print(
        f"# {args.model} on {device}: training {prec.amp and 'bf16' or 'fp32'}"
        f"{' + channels_last' if prec.channels_last else ''} ({prec.reason}); evaluation fp32"
        f"{' + channels_last' if ecl else ''}"
    )
    print(
        f"# seconds per image: training step {t_train * 1e3:.2f} ms, evaluation forward {t_eval * 1e3:.2f} ms "
        f"(ratio {t_train / t_eval:.2f})"
    )
    paper = {**asdict(TrainConfig()), **base("paper")}
    preset = (paper["dynamics_train_size"], paper["dynamics_test_size"], paper["dynamics_every"])
    print(
        f"{'dynamics_train_size':>20s} {'dynamics_test_size':>19s} {'dynamics_every':>15s} "
        f"{'eval images/epoch':>18s} {'share':>7s}"
    )
    for dyn_train, dyn_test, every in CHOICES + ((preset,) if preset not in CHOICES else ()):
        n_eval = VAL + (dyn_train + (TEST if dyn_test is None else dyn_test)) / every
        share = n_eval * t_eval / (TRAIN * t_train + n_eval * t_eval)
        mark = "  <- paper preset" if (dyn_train, dyn_test, every) == preset else ""
        test = f"{TEST} (all)" if dyn_test is None else str(dyn_test)
        print(f"{dyn_train:20d} {test:>19s} {every:15d} {n_eval:18.0f} {100 * share:6.1f}%{mark}")


if __name__ == "__main__":
    main()
