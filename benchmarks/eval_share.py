"""How much of a training epoch goes to evaluation (the validation pass and the per-epoch dynamics passes).

Times, on this machine and in the engine's own settings (training in the measured precision, evaluation in
float32 with the measured memory format), a training step and an evaluation forward pass of one network,
per image, in interleaved rounds; then prints the share of an epoch that the evaluation passes take for the
paper's protocol (45,000 training images, 5,000 validation images, ``dynamics_train_size`` un-augmented
training images and ``dynamics_test_size`` test images per epoch), for a few choices of the dynamics sizes.

    python benchmarks/eval_share.py [--model resnet50] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from focalcal.engine.device import autocast, resolve_device
from focalcal.engine.precision import eval_channels_last, resolve_precision
from focalcal.losses import build_loss
from focalcal.models import build_model

TRAIN, VAL = 45_000, 5_000


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
    print(f"{'dynamics_train_size':>20s} {'dynamics_test_size':>19s} {'eval images':>12s} {'share of epoch':>15s}")
    for dyn_train, dyn_test in ((2000, 10_000), (2000, 2000), (1000, 1000), (0, 0)):
        n_eval = VAL + dyn_train + dyn_test
        share = n_eval * t_eval / (TRAIN * t_train + n_eval * t_eval)
        print(f"{dyn_train:20d} {dyn_test:19d} {n_eval:12d} {100 * share:14.1f}%")


if __name__ == "__main__":
    main()
