"""Classifiers of other libraries in the model registry: ``timm:NAME`` and ``torchvision:NAME``.

Any image classifier of torchvision (``torchvision.models.list_models(module=torchvision.models)``) or timm
(``timm.list_models()``; timm is the optional extra ``pip install 'focalcal[timm]'``) is built with the run's
number of classes. Options (``--model-opt KEY=VALUE`` on the command line):

* ``pretrained`` (default false): start from the library's ImageNet weights, fetched by the library's own
  mechanism (torch hub cache for torchvision, the Hugging Face cache for timm); the classifier is then replaced
  by a freshly initialised one with the run's class count.
* ``cifar_stem`` (default false): adapt an ImageNet stem to 32x32 inputs: the first convolution becomes a 3x3
  stride-1 convolution with the same output channels and the stem max-pool is removed (ResNet / ResNeXt /
  Wide-ResNet families only).

The entry's ``meta["classifier"]`` is the dotted path of the built model's final ``nn.Linear``, so
:func:`focalcal.models.last_linear` works on these models as on focalcal's own.

>>> from focalcal.models import build_model, last_linear
>>> model = build_model("torchvision:resnet18", 10, cifar_stem=True)
>>> model.conv1.kernel_size, model.conv1.stride, type(model.maxpool).__name__
((3, 3), (1, 1), 'Identity')
>>> last_linear(model).out_features
10
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch
import torchvision
from torch import nn

from ..errors import ConfigError, InputError
from ..registry import Entry, Registry, as_bool

__all__ = ["add_external_resolvers", "classifier_path", "adapt_cifar_stem"]

OPTIONS = {"pretrained": as_bool, "cifar_stem": as_bool}
DEFAULTS = {"pretrained": False, "cifar_stem": False}
_TV_LIST = "torchvision.models.list_models(module=torchvision.models)"
_TIMM_LIST = "timm.list_models() (e.g. timm.list_models('*resnet*'))"
# torchvision models whose auxiliary classifiers would make training return a tuple instead of logits (built
# without them)
_TV_AUX_LOGITS = frozenset({"googlenet", "inception_v3"})


def add_external_resolvers(registry: Registry) -> None:
    """Register the ``timm:NAME`` and ``torchvision:NAME`` resolvers on ``registry`` (the model registry)."""
    registry.add_resolver("torchvision", _resolve_torchvision, "torchvision:NAME")
    registry.add_resolver("timm", _resolve_timm, "timm:NAME")


# -- resolvers: validate the name cheaply (config validation calls them) and return one cached entry per name ----
def _resolve_torchvision(name: str) -> Entry:
    key = name.lower()
    valid = torchvision.models.list_models(module=torchvision.models)
    if key not in valid:
        if key in torchvision.models.list_models():
            raise InputError(
                f"torchvision model {name!r} is not an image classifier (detection, segmentation or video); "
                f"list the classifiers with {_TV_LIST}"
            )
        raise InputError(
            f"unknown torchvision model {name!r}{_close(key, valid)}; list the valid names with {_TV_LIST}"
        )
    return _torchvision_entry(key)


def _resolve_timm(name: str) -> Entry:
    timm = _import_timm()
    if not timm.is_model(name):
        raise InputError(
            f"unknown timm model {name!r}{_close(name, timm.list_models())}; list the valid names with {_TIMM_LIST}"
        )
    try:
        timm.models.get_pretrained_cfg(name)  # an invalid pretrained tag ("resnet18.nope") fails here
    except RuntimeError as exc:
        raise InputError(
            f"timm model {name!r}: {exc} List the tags with timm.list_pretrained('{name.split('.')[0]}.*')"
        ) from None
    return _timm_entry(name)


@functools.cache
def _torchvision_entry(name: str) -> Entry:
    meta = _ClassifierMeta(defaults=dict(DEFAULTS), inputs="images")
    meta.build = functools.partial(_build_torchvision, name, meta)
    return Entry(f"torchvision:{name}", meta.build, f"torchvision's {name}", f"{name} (torchvision)", OPTIONS, {}, meta)


@functools.cache
def _timm_entry(name: str) -> Entry:
    meta = _ClassifierMeta(defaults=dict(DEFAULTS), inputs="images")
    meta.build = functools.partial(_build_timm, name, meta)
    return Entry(f"timm:{name}", meta.build, f"timm's {name}", f"{name} (timm)", OPTIONS, {}, meta)


class _ClassifierMeta(dict):
    """An entry's meta whose ``"classifier"`` is filled by the first build (or, read before any build, found
    by building a throwaway copy, on the meta device where the model allows it)."""

    build: Callable[..., nn.Module]

    def __missing__(self, key: str) -> Any:
        if key != "classifier":
            raise KeyError(key)
        try:
            with torch.device("meta"):
                self.build(2)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            self.build(2)
        return self["classifier"]


# -- builders ---------------------------------------------------------------------------------------------------
def _build_torchvision(
    name: str, meta: dict[str, Any], num_classes: int, pretrained: bool = False, cifar_stem: bool = False
) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs (see the module docstring for the options)."""
    kwargs: dict[str, Any] = {"progress": False}
    if name in _TV_AUX_LOGITS and not pretrained:  # (torchvision insists on them when it loads weights)
        kwargs.update(aux_logits=False, init_weights=True)
    if cifar_stem and not _tv_is_resnet(name):
        raise _no_cifar_stem(f"torchvision:{name}")
    if pretrained:
        try:
            weights = torchvision.models.get_model_weights(name).DEFAULT
        except (ValueError, KeyError, AttributeError):
            raise InputError(
                f"torchvision model {name!r} has no pretrained weights; use --model-opt pretrained=false"
            ) from None
        target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
        with _download_errors(f"torchvision:{name}", f"the torch hub cache: copy {weights.url} to {target}"):
            model = torchvision.models.get_model(name, weights=weights, **kwargs)
        if name in _TV_AUX_LOGITS:  # as torchvision does after loading when asked for aux_logits=False
            model.aux_logits = False
            for aux in ("aux1", "aux2", "AuxLogits"):
                if hasattr(model, aux):
                    setattr(model, aux, None)
        path = _last_linear_path(model, f"torchvision:{name}")
        if model.get_submodule(path).out_features != num_classes:
            _replace_linear(model, path, num_classes)
    else:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        path = _last_linear_path(model, f"torchvision:{name}")
    _check_classifier(model, path, num_classes, f"torchvision:{name}")
    if cifar_stem:
        adapt_cifar_stem(model)
    meta["classifier"] = path
    return model


def _build_timm(
    name: str, meta: dict[str, Any], num_classes: int, pretrained: bool = False, cifar_stem: bool = False
) -> nn.Module:
    """timm's ``name`` with ``num_classes`` outputs (see the module docstring for the options)."""
    timm = _import_timm()
    if cifar_stem and not _timm_is_resnet(timm, name):
        raise _no_cifar_stem(f"timm:{name}")
    if pretrained:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None or not any(getattr(cfg, k, None) for k in ("hf_hub_id", "url", "file", "state_dict")):
            raise InputError(f"timm model {name!r} has no pretrained weights; use --model-opt pretrained=false")
        hub = (
            f"the Hugging Face cache ($HF_HOME): `hf download {cfg.hf_hub_id}`"
            if cfg.hf_hub_id
            else f"the torch hub cache ({torch.hub.get_dir()}/checkpoints) with {cfg.url or cfg.file}"
        )
        with _download_errors(f"timm:{name}", hub):
            model = timm.create_model(name, pretrained=True, num_classes=num_classes)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    head = model.get_classifier()
    if getattr(head, "out_features", num_classes) != num_classes:
        model.reset_classifier(num_classes)
        head = model.get_classifier()
    path = _timm_classifier_path(model, head, f"timm:{name}")
    _check_classifier(model, path, num_classes, f"timm:{name}")
    if cifar_stem:
        adapt_cifar_stem(model)
    meta["classifier"] = path
    return model


# -- the CIFAR stem -----------------------------------------------------------------------------------------------
def adapt_cifar_stem(model: nn.Module) -> nn.Module:
    """Adapt an ImageNet ResNet stem to 32x32 inputs, in place: the first convolution becomes a 3x3 stride-1
    convolution with the same input and output channels (freshly initialised, as the library initialises
    convolutions) and the stem max-pool is removed.

    Works on torchvision's ``ResNet`` (resnet*, resnext*, wide_resnet*: ``conv1`` / ``maxpool``) and timm's
    ``ResNet`` family (``conv1``, or the first convolution of a deep stem, and ``maxpool``). A 32x32 input
    then reaches the last stage at 4x4 instead of 1x1.

    Args:
        model: a ResNet-family model of torchvision or timm.

    Returns:
        ``model`` itself, still mapping images ``[N, 3, H, W]`` to logits ``[N, K]``.

    Raises:
        InputError: the model has no ``conv1`` / ``maxpool`` ResNet stem.

    >>> m = adapt_cifar_stem(torchvision.models.resnet18(num_classes=10))
    >>> m.conv1
    Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    """
    stem = getattr(model, "conv1", None)
    if not hasattr(model, "maxpool") or not isinstance(stem, (nn.Conv2d, nn.Sequential)):
        raise _no_cifar_stem(type(model).__name__)
    if isinstance(stem, nn.Sequential):  # timm's deep stems (resnet*d): three 3x3 convolutions, the first strided
        index = next((i for i, m in enumerate(stem) if isinstance(m, nn.Conv2d)), None)
        if index is None:
            raise _no_cifar_stem(type(model).__name__)
        stem[index] = _conv3x3(stem[index])
    else:
        model.conv1 = _conv3x3(stem)
    model.maxpool = nn.Identity()
    return model


def _conv3x3(old: nn.Conv2d) -> nn.Conv2d:
    conv = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=old.bias is not None)
    conv.to(device=old.weight.device, dtype=old.weight.dtype)
    if old.weight.device.type != "meta":
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
    return conv


def _tv_is_resnet(name: str) -> bool:
    builder = torchvision.models.get_model_builder(name)
    return builder.__module__ == "torchvision.models.resnet"


def _timm_is_resnet(timm: ModuleType, name: str) -> bool:
    arch = timm.models.get_arch_name(name)
    return timm.models.model_entrypoint(arch).__module__ == "timm.models.resnet"


def _no_cifar_stem(model: str) -> InputError:
    return InputError(
        f"cifar_stem is not supported for {model} (only the ResNet/ResNeXt/Wide-ResNet families of torchvision "
        "and timm); drop --model-opt cifar_stem=true or choose e.g. torchvision:resnet18"
    )


# -- the classifier -----------------------------------------------------------------------------------------------
def classifier_path(model: nn.Module) -> str:
    """The dotted path of the last ``nn.Linear`` among ``model.named_modules()`` (a torchvision model's classifier:
    ``fc``, ``classifier.1``, ``heads.head``).

    Raises:
        InputError: the model has no ``nn.Linear``.

    >>> classifier_path(torchvision.models.mobilenet_v3_small(num_classes=10))
    'classifier.3'
    """
    return _last_linear_path(model, type(model).__name__)


def _last_linear_path(model: nn.Module, label: str) -> str:
    paths = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not paths:
        raise InputError(
            f"model {label} has no final nn.Linear classifier (focalcal's analyses need one); choose another model"
        )
    return paths[-1]


def _timm_classifier_path(model: nn.Module, head: Any, label: str) -> str:
    """Where ``model.get_classifier()`` lives; the last ``nn.Linear`` inside it when it is a container."""
    if isinstance(head, nn.Module):
        for path, module in model.named_modules():
            if module is head:
                return path if isinstance(head, nn.Linear) else f"{path}.{_last_linear_path(head, label)}".strip(".")
    raise InputError(
        f"model {label}: its classifier ({type(head).__name__}) is not an nn.Linear; focalcal's analyses need one, "
        "choose another model"
    )


def _check_classifier(model: nn.Module, path: str, num_classes: int, label: str) -> None:
    layer = model.get_submodule(path)
    if layer.out_features != num_classes:
        raise InputError(
            f"model {label}: its last nn.Linear {path!r} has {layer.out_features} outputs, not {num_classes}; "
            "its classifier is not a final nn.Linear, choose another model"
        )


def _replace_linear(model: nn.Module, path: str, num_classes: int) -> None:
    parent_path, _, child = path.rpartition(".")
    old = model.get_submodule(path)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(model.get_submodule(parent_path), child, new.to(device=old.weight.device, dtype=old.weight.dtype))


# -- errors ---------------------------------------------------------------------------------------------------------
def _import_timm() -> ModuleType:
    try:
        return importlib.import_module("timm")
    except ImportError:
        raise ConfigError("timm:NAME models need timm, which is not installed: pip install 'focalcal[timm]'") from None


@contextlib.contextmanager
def _download_errors(model: str, cache: str) -> Iterator[None]:
    """Turn a library's failure to download pretrained weights (an ``OSError``: torch hub's
    ``urllib.error.URLError``, huggingface_hub's ``LocalEntryNotFoundError``, connection errors) into a
    one-line ``ConfigError``."""
    try:
        yield
    except OSError as exc:
        cause = " ".join(str(exc).split())[:160]
        raise ConfigError(
            f"pretrained weights of {model} could not be downloaded ({type(exc).__name__}: {cause}); "
            f"--model-opt pretrained=false trains from scratch, or pre-populate {cache}"
        ) from exc


def _close(name: str, valid: list[str]) -> str:
    matches = difflib.get_close_matches(name, valid, n=3)
    return f" (did you mean {', '.join(matches)}?)" if matches else ""
