"""The run's optimisers and lr schedule: one optimiser for the model, plus one per configured parameter group.

``TrainConfig.optimizer`` (``sgd`` / ``adam`` / ``adagrad``) trains every parameter that no
``TrainConfig.param_groups`` entry claims; each entry trains the parameters whose name starts with its
``params`` prefix with its own optimiser and settings (unset keys: the run's). Frozen parameters
(``requires_grad=False``) are left out. Every optimiser follows the one lr schedule (``multistep``: the lr of
each is multiplied by ``lr_gamma`` at every milestone; ``constant``: none). :class:`Optimizers` and
:class:`Schedulers` step, zero and checkpoint them together; with no groups their state dicts are the single
torch optimiser's and scheduler's own (checkpoints of earlier runs resume unchanged).

>>> import torch
>>> from focalcal.engine import TrainConfig
>>> model = torch.nn.Sequential(torch.nn.Embedding(5, 2), torch.nn.Linear(2, 2))
>>> cfg = TrainConfig(optimizer="adagrad", lr=0.05, param_groups=[{"params": "0.", "optimizer": "sgd", "lr": 0.1}])
>>> opt = Optimizers(model, cfg)
>>> [type(o).__name__ for o in opt.optimizers], [g["lr"] for g in opt.param_groups]
(['Adagrad', 'SGD'], [0.05])
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import ConfigError

__all__ = ["Optimizers", "Schedulers", "make_optimizer"]


def make_optimizer(
    name: str,
    params: list[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    betas: Any = None,
    eps: float | None = None,
) -> torch.optim.Optimizer:
    """One torch optimiser: ``sgd`` (``momentum``, ``nesterov``), ``adam`` (``betas``, ``eps``) or ``adagrad``
    (``eps``); ``None`` for ``betas`` / ``eps`` means torch's defaults."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    extra = {} if eps is None else {"eps": eps}
    if name == "adam":
        if betas is not None:
            extra["betas"] = tuple(betas)
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay, **extra)
    raise ConfigError(f"unknown optimizer {name!r}; choose sgd, adam or adagrad")


class _Together:
    """Torch optimisers or lr schedulers (the list attribute named ``key``) stepped and checkpointed together.
    With one of them the state dict is its own (checkpoints of runs before parameter groups resume unchanged),
    else ``{key: [state dicts], **extra}``."""

    key: ClassVar[str] = ""
    noun: ClassVar[str] = ""

    def _members(self) -> list[Any]:
        return getattr(self, self.key)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def step(self) -> None:
        for member in self._members():
            member.step()

    def state_dict(self) -> dict[str, Any]:
        members = self._members()
        if len(members) == 1:
            return members[0].state_dict()
        return {self.key: [m.state_dict() for m in members], **self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raises ConfigError when ``state`` holds another number of them than this run has."""
        members = self._members()
        states = state[self.key] if self.key in state else [state]
        if len(states) != len(members):
            raise ConfigError(f"the checkpoint holds {len(states)} {self.noun}(s), this run has {len(members)}")
        for member, s in zip(members, states):
            member.load_state_dict(s)


def _group_optimizer(params: list[torch.nn.Parameter], group: dict[str, Any], config: Any) -> torch.optim.Optimizer:
    """The optimiser of ``params`` with a parameter group's settings (``{}``: the run's main optimiser); an unset
    key is the run's (``config``'s), and the settings of the run's optimiser kind (``momentum``, ``nesterov``,
    ``betas``, ``eps``) carry over only to a group of the same kind (SGD momentum only to SGD)."""
    opt = group.get("optimizer", config.optimizer)
    same = opt == config.optimizer
    return make_optimizer(
        opt,
        params,
        lr=group.get("lr", config.lr),
        weight_decay=group.get("weight_decay", config.weight_decay),
        momentum=group.get("momentum", config.momentum if same and opt == "sgd" else 0.0),
        nesterov=group.get("nesterov", config.nesterov if same else False),
        betas=group.get("betas", config.betas if same else None),
        eps=group.get("eps", config.eps if same else None),
    )


class Optimizers(_Together):
    """The run's optimisers (see the module docstring); ``param_groups`` are the main optimiser's (its lr is
    the one the log records).

    When the groups claim every trainable parameter, the main optimiser steps nothing and only keeps the lr the
    log records.

    Raises:
        ConfigError: a group's prefix matches no trainable parameter (the message lists the parameter names);
            (:meth:`load_state_dict`) the checkpoint holds another number of optimisers.
    """

    key, noun = "optimizers", "optimiser"

    def __init__(self, model: torch.nn.Module, config: Any):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        claimed: set[str] = set()
        self.optimizers: list[torch.optim.Optimizer] = []
        self.group_names: list[str] = []
        groups = []
        for i, group in enumerate(config.param_groups):
            mine = [(n, p) for n, p in named if n.startswith(group["params"])]
            if not mine:
                names = ", ".join(n for n, _ in named[:12]) + (", ..." if len(named) > 12 else "")
                raise ConfigError(
                    f"param_groups[{i}].params {group['params']!r} matches no trainable parameter of "
                    f"{config.model}; its parameters: {names}"
                )
            claimed.update(n for n, _ in mine)
            groups.append((group, [p for _, p in mine]))
        rest = [p for n, p in named if n not in claimed]
        self.optimizers.append(_group_optimizer(rest, {}, config) if rest else _NoParams(config.lr))
        for group, params in groups:
            self.optimizers.append(_group_optimizer(params, group, config))
            self.group_names.append(group["params"])

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizers[0].param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def _extra_state(self) -> dict[str, Any]:
        return {"groups": list(self.group_names)}


class _NoParams(torch.optim.Optimizer):
    """The main optimiser when every trainable parameter belongs to a group: steps nothing, keeps the lr."""

    def __init__(self, lr: float):
        super().__init__([torch.zeros(0, requires_grad=True)], {"lr": lr})

    def step(self, closure=None):  # noqa: D102
        return None


class Schedulers(_Together):
    """The lr schedule of every optimiser of an :class:`Optimizers` (``multistep`` or ``constant``).

    Raises:
        ConfigError: (:meth:`load_state_dict`) the checkpoint holds another number of schedulers.
    """

    key, noun = "schedulers", "scheduler"

    def __init__(self, optimizers: Optimizers, config: Any):
        milestones = config.resolved_milestones() if config.lr_schedule == "multistep" else []
        self.schedulers = [
            torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=config.lr_gamma)
            for opt in optimizers.optimizers
        ]
