"""Correctness guard for the fast engine: it trains exactly what the standard pipeline trains.

With augmentation off and the same sample order, the engine's batches (uint8 on the device, fused
normalisation, vectorised FLSD-53) and the standard pipeline's (PIL -> ToTensor -> Normalize per sample,
FLSD-53 gamma picked in a Python loop) feed the same numbers to the same model, so per-batch losses over one
epoch must agree up to float32 rounding, amplified by a few SGD steps. Tolerance: 1e-4 relative, measured
differences are ~1e-6 (normalisation differs by one rounding: (x/255 - m)/s vs x*(1/(255 s)) - m/s).
Augmentation itself is checked against torchvision's crops in tests/data/test_augment_loader.py.
"""

import sys
from pathlib import Path

import pytest
import torch

from focalcal.data import load_dataset, make_splits
from focalcal.engine import TrainConfig, Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from baseline_pipeline import standard_loader, train_steps  # noqa: E402


class _FixedOrder(torch.utils.data.Sampler):
    def __init__(self, order):
        self.order = order

    def __iter__(self):
        return iter(self.order.tolist())

    def __len__(self):
        return len(self.order)


def test_one_epoch_matches_standard_pipeline(cifar_subset_root, tmp_path):
    data = make_splits(load_dataset("cifar10", cifar_subset_root, cache_dir=None), val_size=64, train_size=384)
    cfg = TrainConfig(
        model="resnet20",
        loss="flsd53",
        epochs=1,
        batch_size=128,
        device="cpu",
        augment=False,
        dynamics_train_size=0,
        dynamics_test=False,
        amp=False,
        channels_last=False,
    )
    trainer = Trainer(cfg, tmp_path / "run", data=data, progress=False)
    baseline_model = type(trainer.model)(20, 10)
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
    baseline_losses = train_steps(baseline_model, loader)
    assert len(engine_losses) == len(baseline_losses) == 3
    assert engine_losses == pytest.approx(baseline_losses, rel=1e-4)
    # and the loss actually moved (the comparison is not between two constants)
    assert abs(engine_losses[-1] - engine_losses[0]) > 1e-3
