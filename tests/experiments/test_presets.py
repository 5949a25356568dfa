"""Presets and experiment families: every shipped one loads and validates; composition and errors."""

import pytest
import yaml

from focalcal.engine import TrainConfig
from focalcal.errors import ConfigError
from focalcal.experiments.presets import (
    available_bases,
    available_families,
    check_all_presets,
    experiment,
    family_experiments,
    merge,
    resolve_preset,
)


def test_every_shipped_preset_loads_and_validates():
    n = check_all_presets()
    assert n == len(available_bases()) + sum(len(family_experiments(f)) for f in available_families())
    assert {"paper", "cpu", "paper_tiny_imagenet"} <= set(available_bases())


def test_paper_cifar_is_every_cifar_experiment_of_the_paper():
    exps = family_experiments("paper_cifar")
    assert len(exps) == 2 * 4 * 9
    models = {e.model for e in exps}
    assert models == {"resnet50", "resnet110_paper", "wrn26_10", "densenet121"}
    losses = {e.label for e in exps}
    assert losses == {"CE", "Brier", "MMCE", "LS-0.05", "FL-1", "FL-2", "FL-3", "FLSc-531", "FLSD-53"}
    e = experiment("paper_cifar/cifar10/resnet50/flsd53").config
    # the authors' conventions: summed loss with clip 2, (lo, hi] bins, ECE-grid temperature
    assert (e["loss_options"], e["grad_clip"], e["bin_closed"], e["ts_method"]) == (
        {"reduction": "sum"},
        2.0,
        "right",
        "ece_grid",
    )
    assert (e["epochs"], e["milestones"], e["batch_size"], e["lr"], e["weight_decay"]) == (
        350,
        [150, 250],
        128,
        0.1,
        5e-4,
    )
    mmce = experiment("paper_cifar/cifar100/densenet121/mmce_weighted").config
    assert mmce["loss_options"] == {"reduction": "sum", "lam": 2}


def test_the_authors_special_cases_train_longer():
    assert experiment("paper_cifar/cifar10/wrn26_10/brier").config["epochs"] == 550
    assert experiment("paper_cifar/cifar100/resnet110_paper/brier").config["epochs"] == 430
    assert experiment("paper_cifar/cifar100/wrn26_10/brier").config["epochs"] == 350  # only those two
    assert experiment("paper_cifar/cifar10/wrn26_10/ce").config["epochs"] == 350


def test_tiny_imagenet_protocol():
    e = experiment("paper_tiny_imagenet/tiny_imagenet/resnet50_tiny/fl3").config
    assert (e["epochs"], e["milestones"], e["batch_size"], e["val_size"]) == (100, [40, 60], 64, 10000)


def test_ood_sets_per_dataset():
    assert experiment("paper_cifar/cifar10/resnet50/ce").ood == ("svhn", "cifar10c:gaussian_noise:5")
    assert experiment("paper_cifar/cifar100/resnet50/ce").ood == ("svhn", "cifar100c:gaussian_noise:5")
    assert experiment("cpu/cifar10/resnet20/ce").ood == ("fashion_mnist", "cifar10c:gaussian_noise:5")


def test_unknown_keys_and_names_are_errors_listing_the_valid_ones(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epoch": 3}))
    with pytest.raises(ConfigError, match="unknown config keys \\['epoch'\\]; valid keys: .*'epochs'"):
        TrainConfig.from_dict(resolve_preset(str(bad)))
    with pytest.raises(ConfigError, match="choose one of: cpu, paper_cifar"):
        family_experiments("papr")
    with pytest.raises(ConfigError, match="losses: ce, brier"):
        experiment("cpu/cifar10/resnet20/hinge")
    with pytest.raises(ConfigError, match="not a YAML file, a base"):
        resolve_preset("nothing")


def test_merge_is_key_by_key_for_mappings():
    assert merge({"a": 1, "o": {"x": 1, "y": 2}}, {"o": {"y": 3}, "b": 2}) == {"a": 1, "o": {"x": 1, "y": 3}, "b": 2}


def test_the_package_data_patterns_ship_every_preset_file():
    """A non-editable install ships only what ``[tool.setuptools.package-data]`` names: every preset YAML must
    match one of its patterns (they once named only the top folder, and a wheel carried no preset at all)."""
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = root / "src" / "focalcal" / "presets"
    shipped = {p for pattern in patterns["focalcal.presets"] for p in package.glob(pattern)}
    on_disk = set(package.rglob("*.yaml"))
    assert len(on_disk) >= 6
    assert on_disk == shipped, f"not shipped: {sorted(str(p.relative_to(package)) for p in on_disk - shipped)}"
