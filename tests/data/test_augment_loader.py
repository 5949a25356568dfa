import torch
import torchvision.transforms.v2.functional as TF

from focalcal.data import DeviceLoader, random_crop_flip


def _all_crops(img: torch.Tensor, padding: int = 4) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip could produce."""
    padded = TF.pad(img, [padding])
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            c = TF.crop(padded, dy, dx, img.shape[1], img.shape[2])
            out += [(dy, dx, False, c), (dy, dx, True, TF.horizontal_flip(c))]
    return out


def test_random_crop_flip_matches_torchvision_crops_and_covers_all_offsets():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (600, 3, 8, 8), dtype=torch.uint8, generator=g)
    out = random_crop_flip(imgs, 4, generator=torch.Generator().manual_seed(1))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    seen, flips = set(), 0
    for i in range(imgs.shape[0]):
        matches = [(dy, dx, f) for dy, dx, f, c in _all_crops(imgs[i]) if torch.equal(c, out[i])]
        assert matches, f"sample {i} is not a padded crop (+flip) of its input"
        dy, dx, f = matches[0]
        seen.add((dy, dx))
        flips += f
    assert len(seen) == 81  # every offset 0..8 x 0..8 occurs
    assert 240 < flips < 360  # flip probability 1/2 (binomial, 600 draws: mean 300, sd 12)


def test_no_padding_no_flip_is_identity():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    assert torch.equal(random_crop_flip(x, 0, flip=False), x)


def test_loader_normalises_like_torchvision_and_is_seeded():
    x = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    y = torch.arange(10)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    loader = DeviceLoader(x, y, batch_size=4, mean=mean, std=std)
    batches = list(loader.epoch(0))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    ref = TF.normalize(x.float() / 255, list(mean), list(std))
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), ref, rtol=1e-5, atol=1e-5)
    shuf = DeviceLoader(x, y, batch_size=3, mean=mean, std=std, shuffle=True, augment=True, seed=5)
    a = [t.clone() for b in shuf.epoch(3) for t in b]
    b = [t.clone() for b in shuf.epoch(3) for t in b]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    labels = torch.cat([yy for _, yy in shuf.epoch(4)])
    assert sorted(labels.tolist()) == list(range(10))  # every sample once per epoch
    assert not torch.equal(labels, torch.cat([yy for _, yy in shuf.epoch(5)]))
