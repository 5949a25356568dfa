"""Correctness guard for the fast engine: it trains exactly what the standard pipeline trains.

With augmentation off and the same sample order, the engine's batches (uint8 on the device, fused
normalisation, vectorised FLSD-53) and the standard pipeline's (PIL -> ToTensor -> Normalize per sample,
FLSD-53 gamma picked in a Python loop) feed the same numbers to the same model. Tolerances, relative:

- step 1 (identical weights): float32 1e-6, where the measured difference is ~7e-8 (normalisation differs by
  one rounding: (x/255 - m)/s vs x*(1/(255 s)) - m/s); bfloat16 autocast 2e-3, about one bf16 rounding unit
  (2^-9), where the measured difference is 2.6e-4 to 3.8e-4 (rounding errors of 128 samples average out).
  Either tolerance is far below what a pipeline fault gives: a wrong normalisation or gamma moves the loss by
  percents.
- steps 2 and 3 (the weights now differ by the update of the step-1 difference, amplified by lr 0.1):
  float32 3e-4 (measured up to 8e-5), bfloat16 2e-2 (measured up to 4.7e-3). The bfloat16 figures were
  measured with AMX (oneDNN); other bf16 kernels round differently, hence the margins.

Augmentation itself is checked against torchvision's crops in tests/data/test_augment_loader.py; the
effect of bfloat16 on a whole training run's accuracy and calibration is measured in the README (Speed).
"""

import sys
from pathlib import Path

import pytest
import torch

from focalcal.data import load_dataset, make_splits
from focalcal.engine import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the baseline is benchmark code
from baseline import standard_loader, train_steps  # noqa: E402


class _FixedOrder(torch.utils.data.Sampler):
    def __init__(self, order):
        self.order = order

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self):
        return len(self.order)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_one_epoch_matches_standard_pipeline(cifar_subset_root, tmp_path, amp, device):
    data = make_splits(
        load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None), val_size=64, train_size=384
    )
    cfg = TrainConfig(
        model="resnet20",
        loss="flsd53",
        epochs=1,
        batch_size=128,
        device=device,
        augment=False,
        dynamics_train_size=0,
        dynamics_test_size=0,
        amp=amp,
        channels_last=amp,
    )
    trainer = Trainer(cfg, tmp_path / "run", data=data, progress=False)
    baseline_model = type(trainer.model)(20, 10).to(device)
    baseline_model.load_state_dict(trainer.model.state_dict())  # identical initial weights

    # the engine's sample order for epoch 0, given to the baseline's DataLoader
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + 0)
    order = torch.randperm(data.train_images.shape[0], generator=g)

    engine_losses = []
    original = trainer.loss_fn.forward

    def recording(logits, labels):
        loss = original(logits, labels)
        engine_losses.append(float(loss.detach()))
        return loss

    trainer.loss_fn.forward = recording
    trainer._train_epoch(0)

    loader = standard_loader(
        data.train_images,
        data.train_labels,
        data.mean,
        data.std,
        augment=False,
        num_workers=0,
        sampler=_FixedOrder(order),
    )
    if device == "cuda":
        loader = [(x.to(device), y.to(device)) for x, y in loader]
    baseline_losses = train_steps(baseline_model, loader)
    assert len(engine_losses) == len(baseline_losses) == 3
    # CUDA float32 convolutions run in TF32 (10-bit mantissa) during training: bf16-like tolerances there
    first, later = (2e-3, 2e-2) if amp or device == "cuda" else (1e-6, 3e-4)
    assert engine_losses[0] == pytest.approx(baseline_losses[0], rel=first)
    assert engine_losses[1:] == pytest.approx(baseline_losses[1:], rel=later)
    # and the loss actually moved (the comparison is not between two constants)
    assert abs(engine_losses[-1] - engine_losses[0]) > 1e-3
