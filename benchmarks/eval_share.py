"""How much of a training epoch goes to evaluation (the validation pass and the per-epoch dynamics passes).

Times, on this machine and in the engine's own settings (training in the measured precision at the training
batch, evaluation in full float32 -- TF32 off on CUDA -- with the measured memory format at the evaluation
batch), a training step and an evaluation forward pass of one network, per image, in interleaved rounds; then
prints the share of an epoch that the evaluation passes take, averaged over epochs, for the paper's protocol
(45,000 training images, 5,000 validation images every epoch, and ``dynamics_train_size`` un-augmented
training images plus ``dynamics_test_size`` test images every ``dynamics_every`` epochs), for a few choices
of the dynamics settings; the ``paper`` preset's is marked. ``benchmarks/gpu_check.py`` runs it on a GPU.

    python benchmarks/eval_share.py [--model resnet50] [--batch 32] [--eval-batch 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from focalcal.engine.config import TrainConfig
from focalcal.engine.device import autocast, default_eval_batch, exact_float32, resolve_device
from focalcal.engine.precision import eval_channels_last, resolve_precision
from focalcal.experiments.presets import base
from focalcal.losses import build_loss
from focalcal.models import build_model

TRAIN, VAL, TEST = 45_000, 5_000, 10_000
#: (dynamics_train_size, dynamics_test_size, dynamics_every); None: the whole test split, as in the config.
CHOICES = ((2000, None, 1), (2000, None, 2), (2000, 2000, 1), (1000, 1000, 1), (0, 0, 1))


def measure(model_name: str, device: torch.device, *, batch: int, eval_batch: int, rounds: int) -> dict:
    """Seconds per image of a training step and of an evaluation forward pass (medians of ``rounds``)."""
    model = build_model(model_name, 10).to(device)
    prec = resolve_precision(device, None, None, model=model)
    ecl = eval_channels_last(device, model)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss("flsd53", num_classes=10, validate=False).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fmt = {True: torch.channels_last, False: torch.contiguous_format}
    xt = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt[prec.channels_last])
    y = torch.randint(0, 10, (batch,), device=device)
    xe = torch.randn(eval_batch, 3, 32, 32, device=device).contiguous(memory_format=fmt[ecl])

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    def train_step() -> None:
        model.train()
        with autocast(device, prec.amp):
            out = model(xt)
        loss = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def eval_step() -> None:  # as the engine's predict_logits
        model.eval()
        with exact_float32(device):
            model(xe).float()

    timed(train_step), timed(eval_step)  # warm-up
    tr, ev = [], []
    for _ in range(rounds):
        tr.append(timed(train_step) / batch)
        ev.append(timed(eval_step) / eval_batch)
    return {
        "model": model_name,
        "training": f"{'bf16' if prec.amp else 'fp32'}{' + channels_last' if prec.channels_last else ''}",
        "chosen_by": prec.reason,
        "evaluation": f"fp32{' + channels_last' if ecl else ''}",
        "train_s_per_image": sorted(tr)[len(tr) // 2],
        "eval_s_per_image": sorted(ev)[len(ev) // 2],
    }


def shares(t_train: float, t_eval: float) -> list[dict]:
    """The evaluation share of an epoch (averaged over epochs) for each dynamics choice; the paper preset's is
    marked ``preset`` (and added if it is none of :data:`CHOICES`)."""
    paper = {**asdict(TrainConfig()), **base("paper")}
    preset = (paper["dynamics_train_size"], paper["dynamics_test_size"], paper["dynamics_every"])
    rows = []
    for dyn_train, dyn_test, every in CHOICES + ((preset,) if preset not in CHOICES else ()):
        n_eval = VAL + (dyn_train + (TEST if dyn_test is None else dyn_test)) / every
        rows.append(
            {
                "dynamics_train_size": dyn_train,
                "dynamics_test_size": dyn_test,
                "dynamics_every": every,
                "eval_images_per_epoch": n_eval,
                "share": n_eval * t_eval / (TRAIN * t_train + n_eval * t_eval),
                "preset": (dyn_train, dyn_test, every) == preset,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, help="training batch (default: 128 on CUDA, 32 on a CPU, to be short)")
    ap.add_argument("--eval-batch", type=int, help="evaluation batch (default: the engine's for the device)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    batch = args.batch or (128 if device.type == "cuda" else 32)
    eval_batch = args.eval_batch or default_eval_batch(device)
    m = measure(args.model, device, batch=batch, eval_batch=eval_batch, rounds=args.rounds)
    t_train, t_eval = m["train_s_per_image"], m["eval_s_per_image"]
    print(
        f"# {args.model} on {device}: training {m['training']} ({m['chosen_by']}), batch {batch}; "
        f"evaluation {m['evaluation']}, batch {eval_batch}"
    )
    print(
        f"# seconds per image: training step {t_train * 1e3:.2f} ms, evaluation forward {t_eval * 1e3:.2f} ms "
        f"(ratio {t_train / t_eval:.2f})"
    )
    print(
        f"{'dynamics_train_size':>20s} {'dynamics_test_size':>19s} {'dynamics_every':>15s} "
        f"{'eval images/epoch':>18s} {'share':>7s}"
    )
    for r in shares(t_train, t_eval):
        test = f"{TEST} (all)" if r["dynamics_test_size"] is None else str(r["dynamics_test_size"])
        print(
            f"{r['dynamics_train_size']:20d} {test:>19s} {r['dynamics_every']:15d} "
            f"{r['eval_images_per_epoch']:18.0f} {100 * r['share']:6.1f}%{'  <- paper preset' if r['preset'] else ''}"
        )


if __name__ == "__main__":
    main()
