"""timm:NAME and torchvision:NAME models: class count, CIFAR stem, classifier path, pretrained weights, errors."""

import importlib.util
import json
import socket
import sys
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from focalcal.data import load_dataset, make_splits
from focalcal.engine import TrainConfig, Trainer
from focalcal.errors import ConfigError, InputError
from focalcal.models import MODELS, build_model, last_linear, model_label

# timm is an optional extra (pip install 'focalcal[timm]'); only the tests that build timm models need it
needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="pip install 'focalcal[timm]'")


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def last_stage_shape(model, stage, x):
    """Shape of ``stage``'s output when ``model`` maps ``x`` to logits (also returned)."""
    seen = []
    handle = stage.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        logits = model.eval()(x)
    handle.remove()
    return tuple(seen[0]), logits


@pytest.mark.parametrize("name", ["torchvision:resnet18", pytest.param("timm:resnet18", marks=needs_timm)])
def test_resnet18_cifar_stem_keeps_32x32_resolution(name):
    torch.manual_seed(0)
    plain = build_model(name, 10)
    model = build_model(name, 10, cifar_stem=True)
    conv = model.conv1
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        3,
        64,
        (3, 3),
        (1, 1),
        (1, 1),
    )
    assert isinstance(model.maxpool, nn.Identity) and isinstance(plain.maxpool, nn.MaxPool2d)
    # only the stem convolution changed: 7x7 -> 3x3 kernels of 3 -> 64 channels
    assert n_params(model) == n_params(plain) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    x = torch.randn(2, 3, 32, 32)
    shape, logits = last_stage_shape(model, model.layer4, x)
    assert shape == (2, 512, 4, 4) and logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert last_stage_shape(plain, plain.layer4, x)[0] == (2, 512, 1, 1)
    assert last_linear(model) is model.fc and model.fc.out_features == 10
    assert model.focalcal_classifier == MODELS.entry(name).meta["classifier"] == "fc"


@pytest.mark.parametrize(
    "name,path",
    [
        ("torchvision:mobilenet_v3_small", "classifier.3"),
        pytest.param("timm:efficientnet_b0", "classifier", marks=needs_timm),
    ],
)
def test_non_resnets_have_their_classifier_found_and_refuse_cifar_stem(name, path):
    torch.manual_seed(0)
    model = build_model(name, 10)
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert model.focalcal_classifier == MODELS.entry(name).meta["classifier"] == path
    assert last_linear(model) is model.get_submodule(path) and last_linear(model).out_features == 10
    with pytest.raises(InputError, match=f"cifar_stem is not supported for {name}"):
        build_model(name, 10, cifar_stem="true")


@needs_timm
def test_cli_strings_are_converted_and_labels_name_the_library():
    assert MODELS.convert_options("timm:resnet18", {"cifar_stem": "true", "pretrained": "false"}) == {
        "cifar_stem": True,
        "pretrained": False,
    }
    assert model_label("timm:resnet18") == "resnet18 (timm)"
    assert model_label("torchvision:ResNet18") == "resnet18 (torchvision)"
    assert MODELS.label("timm:resnet18", {"cifar_stem": True}) == "resnet18 (timm) (cifar_stem=True)"
    assert "timm:NAME" in MODELS.patterns() and "torchvision:NAME" in MODELS.patterns()
    with pytest.raises(InputError, match="unknown option.*valid options: cifar_stem, pretrained"):
        build_model("torchvision:resnet18", 10, depth=3)


def test_torchvision_pretrained_loads_the_weights_then_replaces_the_classifier(monkeypatch):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()  # stands in for the downloaded 1000-class weights
    urls = []

    def fake_load(url, *args, **kwargs):
        urls.append(url)
        return imagenet

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_load)
    model = build_model("torchvision:resnet18", 10, pretrained="true")
    assert urls == [torchvision.models.ResNet18_Weights.DEFAULT.url]
    assert torch.equal(model.conv1.weight, imagenet["conv1.weight"])
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert last_linear(model).out_features == 10 and last_linear(model).in_features == 512


def test_torchvision_pretrained_offline_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache

    def offline(url, dst, *args, **kwargs):  # what urllib raises without a network
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as err:
        build_model("torchvision:resnet18", 10, pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert "pretrained weights of torchvision:resnet18 could not be downloaded (URLError" in msg
    assert "--model-opt pretrained=false trains from scratch" in msg
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg


@needs_timm
def test_timm_pretrained_offline_is_a_one_line_error(monkeypatch):
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):  # what huggingface_hub raises without a network and an empty cache
        raise LocalEntryNotFoundError(
            "An error happened while trying to locate the file on the Hub and we cannot\n"
            "find the requested files in the local cache."
        )

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", offline)
    with pytest.raises(ConfigError) as err:
        build_model("timm:resnet18", 10, pretrained=True)
    msg = str(err.value)
    assert "\n" not in msg
    assert "pretrained weights of timm:resnet18 could not be downloaded (LocalEntryNotFoundError" in msg
    assert "--model-opt pretrained=false trains from scratch" in msg
    assert "hf download timm/resnet18.a1_in1k" in msg


@pytest.mark.parametrize(
    "name,pattern",
    [
        ("torchvision:resnet9000", r"unknown torchvision model 'resnet9000'.*list_models\(module=torchvision.models\)"),
        ("torchvision:fasterrcnn_resnet50_fpn", "not an image classifier"),
        ("torchvision:squeezenet1_0", "no final nn.Linear classifier"),
        pytest.param(
            "timm:resnt18",
            r"unknown timm model 'resnt18' \(did you mean resnet18.*timm.list_models\(\)",
            marks=needs_timm,
        ),
        pytest.param(
            "timm:resnet18.nope", r"Invalid pretrained tag \(nope\).*list_pretrained\('resnet18.\*'\)", marks=needs_timm
        ),
    ],
)
def test_bad_names_say_how_to_find_valid_ones(name, pattern):
    with pytest.raises(InputError, match=pattern) as err:
        build_model(name, 10)
    assert "\n" not in str(err.value)


def test_without_timm_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now fails as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'focalcal\[timm\]'"):
        build_model("timm:resnet18", 10)
    with pytest.raises(ConfigError, match=r"pip install 'focalcal\[timm\]'"):
        TrainConfig(model="timm:resnet18").validate()
    assert last_linear(build_model("torchvision:resnet18", 10)).out_features == 10  # torchvision still works


@needs_timm
def test_timm_resnet18_trains_one_epoch_on_real_cifar10(cifar_subset_root, tmp_path, quick_precision):
    data = load_dataset("imagefolder", cifar_subset_root / "cifar10", cache_dir=None)  # 600 + 200 real images
    splits = make_splits(data, train_size=256, val_size=64, test_size=64)
    config = TrainConfig(
        model="timm:resnet18",
        model_options={"cifar_stem": True},
        epochs=1,
        batch_size=64,
        device="cpu",
        amp=False,
        channels_last=False,
        dynamics_train_size=0,
        dynamics_test_size=0,
        train_size=256,
        val_size=64,
        test_size=64,
    )
    trainer = Trainer(config, tmp_path / "run", data=splits, progress=False)
    assert trainer.model.conv1.kernel_size == (3, 3) and isinstance(trainer.model.maxpool, nn.Identity)
    trainer.fit()
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and 0 < record["train_loss"] < 20 and 0 <= record["val_acc"] <= 1
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=True)
    assert final["model"]["fc.weight"].shape == (10, 512)
    assert record["fc_weight_norm"] == pytest.approx(float(final["model"]["fc.weight"].norm()), rel=1e-6)
