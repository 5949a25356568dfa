"""CIFAR-10-C corruptions: the documented scales, ordering by severity, determinism, exact formulas."""

import colorsys
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

from focalcal.data import load_dataset
from focalcal.data.corruptions import CORRUPTIONS, available_corruptions, corrupt, defocus_kernel
from focalcal.data.ood import corrupted_test_split

RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise")


@pytest.fixture(scope="module")
def clean(cifar_subset_root):
    """200 real CIFAR-10 test images, uint8 [200, 3, 32, 32]."""
    return load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None).test_images


def test_at_least_the_paper_corruption_and_five_others():
    assert {"gaussian_noise", "shot_noise", "impulse_noise", "contrast", "brightness", "defocus_blur"} <= set(
        available_corruptions()
    )


@pytest.mark.parametrize("severity,c", [(1, 0.04), (5, 0.10)])
def test_gaussian_noise_has_the_documented_scale(clean, severity, c):
    out = corrupt(clean, "gaussian_noise", severity, seed=3)
    x = clean.numpy().astype(np.float64)
    diff = (out.numpy().astype(np.float64) - x) / 255
    mid = (x >= 80) & (x <= 175)  # > 3 sigma from 0 and 255: no clipping
    assert mid.sum() > 100_000
    assert diff[mid].std() == pytest.approx(c, abs=0.002)
    assert abs(diff[mid].mean() + 0.5 / 255) < 0.001  # unbiased up to the uint8 truncation (-0.5/255)


def test_shot_noise_variance_is_poisson(clean):
    # Var(Poisson(x c) / c) = x / c; at x ~ 0.5 and c = 50 (severity 5): std ~ 0.1
    out = corrupt(clean, "shot_noise", 5, seed=0).numpy().astype(np.float64) / 255
    x = clean.numpy().astype(np.float64) / 255
    band = (x > 0.45) & (x < 0.55)
    assert (out - x)[band].std() == pytest.approx(math.sqrt(0.5 / 50), rel=0.05)


def test_impulse_noise_replaces_the_documented_fraction(clean):
    out = corrupt(clean, "impulse_noise", 5, seed=0).numpy()
    x = clean.numpy()
    inner = (x > 0) & (x < 255)
    changed = out[inner] != x[inner]
    assert changed.mean() == pytest.approx(0.07, abs=0.003)
    assert set(np.unique(out[inner][changed])) <= {0, 255}
    assert (out[inner][changed] == 255).mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_severities_are_ordered(clean, corruption):
    changes = [float((corrupt(clean, corruption, s, seed=0).float() - clean.float()).abs().mean()) for s in range(1, 6)]
    assert all(a < b for a, b in zip(changes, changes[1:])), changes
    assert changes[0] > 0.5  # severity 1 already changes pixels


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_deterministic_with_the_seed(clean, corruption):
    a = corrupt(clean[:20], corruption, 3, seed=7)
    assert a.dtype == torch.uint8 and a.shape == (20, 3, 32, 32)
    assert torch.equal(a, corrupt(clean[:20], corruption, 3, seed=7))
    if corruption in RANDOM:
        assert not torch.equal(a, corrupt(clean[:20], corruption, 3, seed=8))
    else:
        assert torch.equal(a, corrupt(clean[:20], corruption, 3, seed=8))


def test_contrast_formula(clean):
    x = clean[:5].numpy().astype(np.float64) / 255
    m = x.mean(axis=(2, 3), keepdims=True)
    expected = np.uint8(np.clip((x - m) * 0.15 + m, 0, 1) * 255)
    np.testing.assert_array_equal(corrupt(clean[:5], "contrast", 5).numpy(), expected)


def test_brightness_equals_the_hsv_round_trip(clean):
    imgs = clean[:4]
    out = corrupt(imgs, "brightness", 5).numpy()
    expected = np.empty_like(out)
    for n in range(imgs.shape[0]):
        for i in range(32):
            for j in range(32):
                h, s, v = colorsys.rgb_to_hsv(*(imgs[n, :, i, j].numpy() / 255.0))
                rgb = colorsys.hsv_to_rgb(h, s, min(v + 0.3, 1.0))
                expected[n, :, i, j] = np.uint8(np.clip(rgb, 0, 1) * 255)
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # equal up to float rounding at the truncation
    black = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    assert corrupt(black, "brightness", 5).unique().tolist() == [76]  # V = 0.3 grey: floor(0.3 * 255)


def test_defocus_kernel_values():
    # severity 1: radius 0.3 is one pixel, blurred by a 3x3 Gaussian with sigma 0.4
    e = math.exp(-1 / (2 * 0.4**2))
    k = defocus_kernel(0.3, 0.4)
    assert k.shape == (3, 3) and k[1, 1] == pytest.approx(1 / (1 + 2 * e) ** 2)
    k = defocus_kernel(1.5, 0.1)  # severity 5: the 3x3 disk (x^2 + y^2 <= 2.25), 1/9 each
    assert k.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(k[1:4, 1:4], 1 / 9, rtol=1e-12)


def test_defocus_blur_is_a_reflect_101_correlation(clean):
    out = corrupt(clean[:3], "defocus_blur", 4).numpy()
    k = defocus_kernel(1.0, 0.2)
    x = clean[:3].numpy() / 255.0
    # scipy's "mirror" border is OpenCV's BORDER_REFLECT_101
    ref = np.stack([correlate(x[i], k[None], mode="mirror") for i in range(3)])
    diff = np.abs(out.astype(int) - np.uint8(np.clip(ref, 0, 1) * 255).astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # equal up to float rounding at the truncation


def test_bad_arguments_raise():
    x = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="gaussian_noise"):
        corrupt(x, "fog_of_war", 1)
    with pytest.raises(ValueError, match="1, 2, 3, 4, 5"):
        corrupt(x, "gaussian_noise", 6)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(x.float(), "gaussian_noise", 1)


def test_corrupted_split_is_cached(cifar_root, tmp_path):
    kw = dict(data_dir=cifar_root, cache_dir=tmp_path)
    a, y = corrupted_test_split("cifar10", "gaussian_noise", 5, **kw)
    files = list((tmp_path / "corrupted").glob("cifar10c-gaussian_noise-5-seed0-*.pt"))
    assert len(files) == 1 and a.shape == (10_000, 3, 32, 32) and y.shape == (10_000,)
    torch.save(torch.zeros_like(a), files[0])  # a cache hit returns the file's content
    b, _ = corrupted_test_split("cifar10", "gaussian_noise", 5, **kw)
    assert b.sum() == 0
