"""Experiment presets: a base protocol composed with a dataset, a model and a loss, and families of them.

Shipped with the package under ``focalcal/presets``:

- ``base/<name>.yaml``: a protocol, as :class:`~focalcal.engine.TrainConfig` keys (``paper``, ``cpu``, ...);
- ``families/<name>.yaml``: an experiment family, the product of its ``axes`` (``dataset``, ``model``,
  ``loss``) on top of a ``base``, with ``special`` cases (``when`` an experiment matches, ``set`` keys),
  the ``ood`` sets to score per dataset, and a ``description``. Where datasets need their own protocol and
  models (the text experiments: a CNN on 20 Newsgroups, a Tree-LSTM on SST), ``base`` and the ``model`` axis
  may map each dataset to its own.

A preset is named ``<base>`` (the protocol alone: give ``--dataset/--model/--loss`` yourself),
``<family>/<dataset>/<model>/<loss>`` (one experiment of a family), or a path to a YAML file of config keys.
Mappings merge key by key (a loss's ``options`` add to the base's ``loss_options``); unknown keys are errors
that list the valid ones.

>>> exp = experiment("paper_cifar/cifar10/wrn26_10/brier")
>>> exp.config["epochs"], exp.config["milestones"], exp.config["loss_options"]
(550, [150, 250], {'reduction': 'sum'})
>>> len(family_experiments("paper_cifar"))
72
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..engine import TrainConfig
from ..errors import ConfigError
from ..losses import loss_label

AXES = ("dataset", "model", "loss")
_FAMILY_KEYS = {"description", "base", "axes", "special", "ood"}


@dataclass(frozen=True)
class Experiment:
    """One experiment of a family: its name, resolved configuration keys and OOD sets."""

    name: str
    family: str
    dataset: str
    model: str
    loss_key: str
    config: dict[str, Any]
    ood: tuple[str, ...] = ()

    def run_dir(self, root: str | Path, seed: int) -> Path:
        """``root/<dataset>/<model>/<loss>/seed<seed>``: where a sweep puts this experiment's run."""
        return Path(root) / self.dataset / self.model / self.loss_key / f"seed{seed}"

    def train_config(self, **overrides: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.config, **overrides})

    @property
    def label(self) -> str:
        return loss_label(self.config["loss"], self.config.get("loss_options"))


@dataclass(frozen=True)
class Family:
    """A family as read from its YAML; ``base`` and ``axes["model"]`` may map each dataset to its own."""

    name: str
    description: str
    base: str | dict[str, str]
    axes: dict[str, Any]
    special: list[dict[str, Any]] = field(default_factory=list)
    ood: dict[str, list[str]] = field(default_factory=dict)

    def base_of(self, dataset: str) -> str:
        """The base protocol of ``dataset``'s experiments."""
        return self.base[dataset] if isinstance(self.base, dict) else self.base

    def models_of(self, dataset: str) -> list[str]:
        """The models trained on ``dataset``."""
        models = self.axes["model"]
        return list(models[dataset]) if isinstance(models, dict) else list(models)

    def all_models(self) -> list[str]:
        """Every model of the family, in order of first appearance."""
        return list(dict.fromkeys(m for d in self.axes["dataset"] for m in self.models_of(d)))


# -- reading YAML --------------------------------------------------------------------------------------------
def _files(kind: str) -> list[str]:
    folder = resources.files("focalcal.presets").joinpath(kind)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a YAML mapping of keys")
    return data


def _packaged(kind: str, name: str) -> dict[str, Any]:
    text = resources.files("focalcal.presets").joinpath(kind, f"{name}.yaml").read_text()
    return _read_yaml(text, f"preset {kind}/{name}")


def available_bases() -> list[str]:
    return _files("base")


def describe_base(name: str) -> str:
    """The first comment line of base preset ``name`` (its one-line description)."""
    text = resources.files("focalcal.presets").joinpath("base", f"{name}.yaml").read_text()
    first = next((line for line in text.splitlines() if line.startswith("#")), "# ")
    return first.lstrip("# ").strip()


def available_families() -> list[str]:
    return _files("families")


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``b`` over ``a``; nested mappings (``loss_options``, ``model_options``) merge key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the ``--set KEY=YAML`` overrides applied, as ``focalcal train --set`` and ``focalcal
    sweep --set`` apply them: each value is parsed as YAML (``"10"`` -> 10, ``"0.1"`` -> 0.1, ``"[50, 75]"`` -> a
    list, ``"null"`` -> None, ``"{gamma: 3}"`` -> a mapping, other text stays a string; a value that is not a
    string is kept as it is), then merged over ``config`` by :func:`merge` (a mapping such as ``loss_options``
    key by key, anything else replaced). ``config`` is not changed.

    >>> apply_overrides({"epochs": 5, "loss_options": {"gamma": 2}}, {"epochs": "10", "loss_options": "{beta: 1}"})
    {'epochs': 10, 'loss_options': {'gamma': 2, 'beta': 1}}

    Raises:
        ConfigError: a value that is not YAML, naming its ``--set KEY=VALUE``.
    """
    values = {}
    for key, text in overrides.items():
        try:
            values[key] = yaml.safe_load(text) if isinstance(text, str) else text
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}={text}: not a YAML value") from None
    return merge(config, values)


def base(name: str) -> dict[str, Any]:
    """The config keys of base protocol ``name``."""
    if name not in available_bases():
        raise ConfigError(f"unknown base preset {name!r}; choose one of: {', '.join(available_bases())}")
    return _packaged("base", name)


def load_family(name: str) -> Family:
    """Read and check family ``name`` (keys, axes, special cases)."""
    if name not in available_families():
        raise ConfigError(f"unknown experiment family {name!r}; choose one of: {', '.join(available_families())}")
    data = _packaged("families", name)
    unknown = sorted(set(data) - _FAMILY_KEYS)
    if unknown:
        raise ConfigError(f"family {name}: unknown keys {unknown}; valid keys: {sorted(_FAMILY_KEYS)}")
    axes = data.get("axes") or {}
    if set(axes) != set(AXES) or not all(v and isinstance(v, (list, dict)) for v in axes.values()):
        raise ConfigError(f"family {name}: axes must give non-empty lists for exactly {', '.join(AXES)}")
    datasets = axes["dataset"] if isinstance(axes["dataset"], list) else []
    for key, value in (("axes.model", axes["model"]), ("base", data.get("base"))):
        if isinstance(value, dict) and (set(value) != set(datasets) or not all(value.values())):
            raise ConfigError(
                f"family {name}: {key} as a mapping must give every dataset of the dataset axis "
                f"({', '.join(map(str, datasets))}) its own; got {sorted(value)}"
            )
    if not isinstance(axes["dataset"], list) or not isinstance(axes["loss"], list):
        raise ConfigError(f"family {name}: the dataset and loss axes must be lists")
    if not isinstance(data.get("base"), (str, dict)):
        raise ConfigError(f"family {name}: base must name a base preset, or map each dataset to one")
    special = data.get("special") or []
    for s in special:
        if set(s) != {"when", "set"} or set(s["when"]) - set(AXES):
            raise ConfigError(f"family {name}: each special case needs 'when' (over {', '.join(AXES)}) and 'set'")
    return Family(name, data.get("description", ""), data["base"], axes, special, data.get("ood") or {})


def _loss_entry(entry: Any) -> tuple[str, str, dict[str, Any]]:
    """``(key, registry name, options)`` of a loss axis entry: a name, or ``{name, options, key}``."""
    if isinstance(entry, str):
        return entry, entry, {}
    if isinstance(entry, Mapping) and "name" in entry and set(entry) <= {"name", "options", "key"}:
        return entry.get("key", entry["name"]), entry["name"], dict(entry.get("options") or {})
    raise ConfigError(f"a loss axis entry must be a name or {{name, options, key}}; got {entry!r}")


def family_experiments(name: str, **only: str) -> list[Experiment]:
    """Every experiment of family ``name`` (optionally only those whose dataset/model/loss equal ``only``)."""
    fam = load_family(name)
    bad = sorted(set(only) - set(AXES))
    if bad:
        raise ConfigError(f"can only select by {', '.join(AXES)}; got {bad}")
    out = []
    combos = (
        (d, m, loss) for d in fam.axes["dataset"] for m, loss in itertools.product(fam.models_of(d), fam.axes["loss"])
    )
    for dataset, model, loss in combos:
        key, loss_name, options = _loss_entry(loss)
        where = {"dataset": dataset, "model": model, "loss": key}
        if any(where[k] != v for k, v in only.items()):
            continue
        cfg = merge(base(fam.base_of(dataset)), {"dataset": dataset, "model": model, "loss": loss_name})
        cfg = merge(cfg, {"loss_options": options})
        for s in fam.special:
            if all(where[k] == v for k, v in s["when"].items()):
                cfg = merge(cfg, s["set"])
        out.append(
            Experiment(
                f"{name}/{dataset}/{model}/{key}", name, dataset, model, key, cfg, tuple(fam.ood.get(dataset, ()))
            )
        )
    return out


def experiment(name: str) -> Experiment:
    """The experiment ``<family>/<dataset>/<model>/<loss>``."""
    parts = name.split("/")
    if len(parts) != 4:
        raise ConfigError(f"an experiment is named <family>/<dataset>/<model>/<loss>; got {name!r}")
    family, dataset, model, loss = parts
    found = family_experiments(family, dataset=dataset, model=model, loss=loss)
    if not found:
        fam = load_family(family)
        keys = ", ".join(_loss_entry(e)[0] for e in fam.axes["loss"])
        raise ConfigError(
            f"family {family} has no experiment {dataset}/{model}/{loss}; datasets: "
            f"{', '.join(fam.axes['dataset'])}; models: {', '.join(fam.all_models())}; losses: {keys}"
        )
    return found[0]


def resolve_preset(name_or_path: str) -> dict[str, Any]:
    """Config keys of a preset: a YAML file path, a base name, or ``<family>/<dataset>/<model>/<loss>``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        return _read_yaml(path.read_text(), f"preset file {path}")
    if "/" in name_or_path:
        return dict(experiment(name_or_path).config)
    if name_or_path in available_bases():
        return base(name_or_path)
    raise ConfigError(
        f"unknown preset {name_or_path!r}: not a YAML file, a base ({', '.join(available_bases())}) or an "
        f"experiment <family>/<dataset>/<model>/<loss> (families: {', '.join(available_families())})"
    )


def check_all_presets() -> int:
    """Validate every base and every experiment of every family; returns the number checked."""
    n = 0
    for name in available_bases():
        TrainConfig.from_dict(base(name)).validate()
        n += 1
    for fam in available_families():
        for exp in family_experiments(fam):
            exp.train_config().validate()
            n += 1
    return n
