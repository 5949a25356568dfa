"""The model registry: ``build_model(name, num_classes)``, ``available_models()``, ``last_linear(model)``.

Every entry records where its final ``nn.Linear`` classifier lives (``meta["classifier"]``), so analyses
(the paper's Fig. 5, last-layer weight norm) never guess module names. Models of other libraries are
resolved by prefix (``timm:NAME``, ``torchvision:NAME``; see :mod:`focalcal.models.external`).

>>> model = build_model("resnet20", 10)
>>> last_linear(model).out_features
10
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from torch import nn

from ..errors import InputError
from ..registry import Converter, Entry, Registry, as_bool, as_float, as_int, as_int_tuple, as_is
from ..validation import check_num_classes
from .cifar_resnet import BottleneckResNet, ThinResNet
from .densenet import DenseNet
from .external import add_external_resolvers
from .text import GlobalPoolingCNN, TreeLSTM
from .wide_resnet import WideResNet

#: Every registered model; ``register_model`` adds one. ``timm:NAME`` and ``torchvision:NAME`` are resolved
#: by :mod:`focalcal.models.external`.
MODELS = Registry("model")
add_external_resolvers(MODELS)


def register_model(
    name: str,
    factory: Callable[[int], nn.Module],
    *,
    description: str,
    label: str | None = None,
    classifier: str = "fc",
    options: Mapping[str, Converter] | None = None,
    inputs: str = "images",
    replace: bool = False,
) -> Entry:
    """Register ``factory(num_classes, **options) -> nn.Module``; ``classifier`` names its final ``nn.Linear``
    (a dotted path, e.g. ``"head.fc"``); ``options`` maps the options it accepts to their converters; ``inputs``
    (``meta["inputs"]``) says what ``forward`` takes: ``"images"`` (float ``[N, 3, H, W]``), ``"tokens"`` (int64
    ids ``[N, L]``) or ``"trees"`` (a :class:`focalcal.data.trees.TreeBatch`)."""
    return MODELS.register(
        name,
        factory,
        description=description,
        label=label or name,
        options=options,
        meta={"classifier": classifier, "inputs": inputs},
        replace=replace,
    )


for _depth in (20, 32, 44, 56, 110):
    register_model(
        f"resnet{_depth}",
        functools.partial(ThinResNet, _depth),
        description=f"He et al.'s thin CIFAR ResNet-{_depth} (16-32-64 channels); CPU-friendly",
        label=f"ResNet-{_depth} (thin)",
    )
for _name, _factory, _label, _description in (
    (
        "resnet50",
        functools.partial(BottleneckResNet, (3, 4, 6, 3)),
        "ResNet-50",
        "the paper's CIFAR ResNet-50 (bottleneck [3,4,6,3], 64-512 channels, 3x3 stem, no max-pool)",
    ),
    (
        "resnet50_tiny",
        functools.partial(BottleneckResNet, (3, 4, 6, 3), pool=2),
        "ResNet-50 (Tiny-ImageNet)",
        "the paper's Tiny-ImageNet ResNet-50 (as resnet50, final 2x2 average pool: 8192 features)",
    ),
    (
        "resnet110_paper",
        functools.partial(BottleneckResNet, (3, 4, 26, 3)),
        "ResNet-110",
        "the paper's 'ResNet-110' (bottleneck [3,4,26,3], 64-512 channels), not He et al.'s thin one",
    ),
    ("wrn26_10", functools.partial(WideResNet, 26, 10), "WRN-26-10", "Wide-ResNet-26-10 (Zagoruyko & Komodakis)"),
    (
        "densenet121",
        functools.partial(DenseNet, (6, 12, 24, 16), 32),
        "DenseNet-121",
        "DenseNet-121 (growth 32, blocks [6,12,24,16], compression 0.5) with a 3x3 CIFAR stem",
    ),
):
    register_model(_name, _factory, description=_description, label=_label)
_TEXT_OPTIONS = {"embeddings": as_is, "vocab_size": as_int, "embedding_dim": as_int, "freeze": as_bool}
register_model(
    "gpcnn",
    GlobalPoolingCNN,
    description="the paper's 20 Newsgroups global-pooling CNN (frozen word vectors, 3 conv k5, global max); token ids",
    label="GP-CNN",
    options={**_TEXT_OPTIONS, "dropout": as_float},
    inputs="tokens",
)
register_model(
    "treelstm",
    TreeLSTM,
    description="the paper's SST constituency Tree-LSTM (Tai et al. 2015, memory 150, fine-tuned vectors); trees",
    label="Tree-LSTM",
    options={
        **_TEXT_OPTIONS,
        "memory": as_int,
        "dropout": as_float,
        "output_classes": as_int_tuple,
        "output_gate": as_bool,
    },
    inputs="trees",
)


def available_models() -> list[str]:
    """Names accepted by :func:`build_model` (plus the ``timm:NAME`` / ``torchvision:NAME`` patterns)."""
    return MODELS.names()


def describe_models() -> dict[str, str]:
    """Name -> one-line description, for ``focalcal list``."""
    return MODELS.describe()


def model_label(name: str) -> str:
    """Display name of a model (``"resnet110_paper"`` -> ``"ResNet-110"``)."""
    return MODELS.label(name)


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a registry name (:func:`available_models`), or ``timm:NAME`` / ``torchvision:NAME``.
        num_classes: width K of the output logits (>= 2).
        **options: model options (e.g. ``pretrained``, ``cifar_stem`` for external models; ``embeddings``,
            ``freeze``, ... for the text models, see :mod:`focalcal.models.text`).

    Returns:
        ``nn.Module`` mapping its inputs (``MODELS.entry(name).meta["inputs"]``: float images ``[N, 3, H, W]``,
        token ids or a tree batch) to logits ``[N, K]``. The registry name is stored on the model as
        ``model.focalcal_name``.

    Raises:
        InputError: unknown name (the message lists the valid ones), an unknown option, or ``num_classes < 2``.
    """
    entry = MODELS.entry(name)
    num_classes = check_num_classes(num_classes)
    model = MODELS.build(name, num_classes, **options)
    model.focalcal_name = name
    model.focalcal_options = dict(options)
    model.focalcal_classifier = entry.meta["classifier"]
    return model


def unwrap_model(model: nn.Module | None) -> nn.Module | None:
    """The model inside its DistributedDataParallel and ``torch.compile`` wrappers (``model`` itself when it has
    none; ``None`` for ``None``)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(inner, "_orig_mod", inner)  # torch.compile


def last_linear(model: nn.Module) -> nn.Linear:
    """The final linear classifier of a model built by :func:`build_model` (also inside DDP/compile wrappers).

    Raises:
        InputError: the model was not built by :func:`build_model`, or its classifier is not ``nn.Linear``.
    """
    inner = unwrap_model(model)
    path = getattr(inner, "focalcal_classifier", None)
    if path is None:
        raise InputError("model was not built by focalcal.models.build_model; cannot locate its classifier")
    layer = inner.get_submodule(path)
    if not isinstance(layer, nn.Linear):
        raise InputError(f"model {inner.focalcal_name!r}: {path!r} is not nn.Linear but {type(layer).__name__}")
    return layer
