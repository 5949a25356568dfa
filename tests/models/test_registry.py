import pytest
import torch
import torchvision

from focalcal.models import MODELS, available_models, build_model, last_linear


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name,expected", [("resnet20", 0.27e6), ("resnet32", 0.46e6), ("resnet56", 0.85e6), ("resnet110", 1.7e6)]
)
def test_thin_resnets_match_he_et_al_parameter_counts(name, expected):
    # He et al. 2016, Table 6 (CIFAR-10): 0.27M, 0.46M, 0.85M, 1.7M parameters
    assert n_params(build_model(name, 10)) == pytest.approx(expected, rel=0.03)


def test_paper_resnet50_is_torchvision_bottleneck_with_3x3_stem():
    ours = n_params(build_model("resnet50", 10))
    tv = n_params(torchvision.models.resnet50(num_classes=10))
    assert ours == tv - 3 * 64 * 7 * 7 + 3 * 64 * 3 * 3


def test_paper_resnet110_block_layout():
    m = build_model("resnet110_paper", 10)
    tv = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [3, 4, 26, 3], num_classes=10)
    assert n_params(m) == n_params(tv) - 3 * 64 * 7 * 7 + 3 * 64 * 3 * 3


@pytest.mark.parametrize("name", [n for n in available_models() if MODELS.entry(n).meta["inputs"] == "images"])
def test_every_model_maps_images_to_logits(name):
    torch.manual_seed(0)
    m = build_model(name, 7).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    fc = last_linear(m)
    assert isinstance(fc, torch.nn.Linear) and fc.out_features == 7


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="resnet20.*resnet50"):
        build_model("vgg16", 10)


def test_densenet121_is_torchvisions_with_a_3x3_stem():
    # torchvision's densenet121 is the published architecture (Huang et al. 2017, Table 1: 6/12/24/16 layers,
    # growth 32); the CIFAR variant replaces the 7x7 conv + BN stem by one 3x3 conv and has the rest identical
    ours = n_params(build_model("densenet121", 10))
    tv = n_params(torchvision.models.densenet121(num_classes=10))
    assert ours == tv - 3 * 64 * 7 * 7 - 2 * 64 + 3 * 64 * 3 * 3
    assert tv == 6_964_106  # 7,978,856 with 1000 classes, as published, minus 990 x 1025 classifier weights


def test_densenet121_maps_32x32_to_a_1024_feature_classifier():
    m = build_model("densenet121", 100)
    assert last_linear(m).in_features == 1024 and last_linear(m).out_features == 100
