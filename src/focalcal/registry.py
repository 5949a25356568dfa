"""One registry shape for losses, models and calibrators: a name, a factory, a label, options, a description.

Adding a loss, model or calibrator is one ``register(...)`` call next to its code; the CLI (``focalcal
list``, ``--loss-opt``), the presets, the tables and the plot legends all read the entry, so nothing else
changes.

>>> reg = Registry("shape")
>>> _ = reg.register("square", lambda side=1.0, colour="red": side * side, description="area of a square",
...                  label="square-{side}", options={"side": float, "colour": str})
>>> reg.build("square", side="3")
9.0
>>> reg.label("square", {"side": 2}), reg.label("square", {"colour": "blue"})
('square-2', 'square-1 (colour=blue)')
>>> reg.build("circle")
Traceback (most recent call last):
...
focalcal.errors.InputError: unknown shape 'circle'; choose one of: square
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

Converter = Callable[[Any], Any]
_NONE = object()
_SYMBOLS = {"gamma": "γ", "lam": "λ"}


def ascii_label(label: str) -> str:
    """A label with its option symbols spelled out, for file names: ``"MMCE (λ=1)"`` -> ``"MMCE (lam=1)"``."""
    for name, symbol in _SYMBOLS.items():
        label = label.replace(symbol, name)
    return label


def option_suffix(options: Mapping[str, Any]) -> str:
    """``{"lam": 2, "margin": 5}`` -> ``" (λ=2, margin=5)"``; empty options give ``""``."""
    if not options:
        return ""
    return " (" + ", ".join(f"{_SYMBOLS.get(k, k)}={fmt_number(v)}" for k, v in options.items()) + ")"


def signature_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults of ``factory``'s signature (``{}`` when it has none or cannot be inspected)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _call_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword defaults a call of ``factory`` uses: for a class, those of every ``__init__`` of its bases too
    (options passed on through ``**kwargs``), the most derived winning."""
    if not isinstance(factory, type):
        return signature_defaults(factory)
    out: dict[str, Any] = {}
    for cls in reversed(factory.__mro__):
        if "__init__" in vars(cls) and cls is not object:
            out.update(signature_defaults(cls.__init__))
    return out


@dataclass(frozen=True)
class Entry:
    """One registered object.

    Attributes:
        name: the registry key (lower case; what users type).
        factory: builds the object: ``factory(*args, **fixed, **converted_options)``.
        description: one line for listings.
        label: a display label for plots and tables: a format string whose ``{option}`` fields are filled
            from the options (or their defaults), e.g. ``"FL-{gamma}"``; options it does not show are appended
            unless they equal their default. Or a function of the options returning the whole label.
        options: option name -> converter (strings from the command line become values); the converter
            raises ``ValueError``/``TypeError`` on a bad value.
        fixed: keyword arguments always passed to ``factory`` (e.g. ``gamma=3`` for FL-3).
        meta: anything else the owner needs (e.g. a model's classifier attribute); ``meta["defaults"]``
            holds the options' default values (read from the factory's signature when not given).
    """

    name: str
    factory: Callable[..., Any]
    description: str
    label: str | Callable[[Mapping[str, Any]], str]
    options: Mapping[str, Converter] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def display(self, options: Mapping[str, Any] | None = None) -> str:
        """The label for these options (see ``label``)."""
        opts = dict(options or {})
        if callable(self.label):
            return self.label(opts)
        defaults = self.meta.get("defaults", {})
        fields = [f for _, f, _, _ in string.Formatter().parse(self.label) if f]
        head = self.label.format(**{f: fmt_number(opts.get(f, defaults.get(f, "?"))) for f in fields})
        return head + option_suffix({k: v for k, v in opts.items() if k not in fields and v != defaults.get(k, _NONE)})


class Registry:
    """Named factories of one kind (``"loss"``, ``"model"``, ``"calibrator"``).

    Args:
        kind: what the entries are, used in messages ("unknown loss ...").
        shared_options: options every entry accepts besides its own (e.g. a loss's ``reduction``).

    Open-ended names such as ``timm:resnet18`` are resolved by :meth:`add_resolver`.
    """

    def __init__(
        self,
        kind: str,
        *,
        shared_options: Mapping[str, Converter] | None = None,
    ) -> None:
        self.kind = kind
        self.shared_options = dict(shared_options or {})
        self._entries: dict[str, Entry] = {}
        self._resolvers: dict[str, tuple[Callable[[str], Entry], str]] = {}

    def register(
        self,
        name: str,
        factory: Callable[..., Any],
        *,
        description: str,
        label: str | Callable[[Mapping[str, Any]], str] | None = None,
        options: Mapping[str, Converter] | None = None,
        fixed: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> Entry:
        """Add an entry (``replace=True`` to redefine an existing name); returns it."""
        key = name.strip().lower()
        if key in self._entries and not replace:
            raise InputError(f"{self.kind} {key!r} is already registered; pass replace=True to redefine it")
        meta = dict(meta or {})
        meta.setdefault("defaults", signature_defaults(factory))
        entry = Entry(
            key, factory, description, key if label is None else label, dict(options or {}), dict(fixed or {}), meta
        )
        self._entries[key] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register temporary ones clean up with this)."""
        self._entries.pop(name.strip().lower(), None)

    def add_resolver(self, prefix: str, resolve: Callable[[str], Entry], pattern: str) -> None:
        """Resolve names ``prefix:REST`` with ``resolve(REST)``; ``pattern`` is shown in listings."""
        self._resolvers[prefix] = (resolve, pattern)

    def names(self) -> list[str]:
        """Sorted registered names (names resolved by prefix are not listed; see :meth:`patterns`)."""
        return sorted(self._entries)

    def patterns(self) -> list[str]:
        """Open-ended name patterns, e.g. ``timm:NAME``."""
        return [pattern for _, pattern in self._resolvers.values()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.entry(name)
        except InputError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted (as :meth:`names`)."""
        return iter(self.names())

    def entries(self) -> Iterable[Entry]:
        return (self._entries[k] for k in self.names())

    def entry(self, name: str) -> Entry:
        """The entry for ``name``; an error listing the valid names otherwise."""
        if not isinstance(name, str):
            raise InputError(f"{self.kind} name must be a string; got {name!r}")
        prefix, sep, rest = name.partition(":")
        if sep and prefix.strip().lower() in self._resolvers:
            return self._resolvers[prefix.strip().lower()][0](rest.strip())
        key = name.strip().lower()
        if key not in self._entries:
            valid = ", ".join(self.names() + self.patterns())
            raise InputError(f"unknown {self.kind} {name!r}; choose one of: {valid}")
        return self._entries[key]

    def option_names(self, name: str) -> list[str]:
        """Sorted options ``name`` accepts (its own and the shared ones)."""
        return sorted({**self.entry(name).options, **self.shared_options})

    def convert_options(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options converted by their converters; an error naming any unknown option or bad value."""
        entry = self.entry(name)
        valid = {**entry.options, **self.shared_options}
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise InputError(
                f"unknown option(s) {', '.join(unknown)} for {self.kind} {name!r}; "
                f"valid options: {', '.join(sorted(valid)) or 'none'}"
            )
        out = {}
        for key, value in options.items():
            try:
                out[key] = valid[key](value)
            except (TypeError, ValueError) as exc:
                raise InputError(f"option {key}={value!r} of {self.kind} {name!r} is invalid: {exc}") from None
        return out

    def identity(self, name: str, options: Mapping[str, Any] | None = None, *, ignore: Iterable[str] = ()) -> dict:
        """What ``build(name, **options)`` makes, whatever the spelling: the factory and every keyword argument
        it gets (its defaults, the entry's fixed options, the converted ``options``), less the ``ignore`` ones.

        An alias is an entry with fixed options, so ``fl2`` and ``focal`` with ``gamma="2"`` or ``gamma=2.0``
        have one identity: ``{"factory": "focalcal.losses.focal.FocalLoss", "options": {"gamma": 2.0, ...}}``.

        Raises:
            InputError: unknown name, unknown option, or an option value its converter rejects.
        """
        entry = self.entry(name)
        typed = self.convert_options(name, options or {})
        kwargs = {**_call_defaults(entry.factory), **entry.meta.get("defaults", {}), **entry.fixed, **typed}
        for key in ignore:
            kwargs.pop(key, None)
        qualname = getattr(entry.factory, "__qualname__", None)
        factory = f"{entry.factory.__module__}.{qualname}" if qualname else f"{self.kind}:{entry.name}"
        return {"factory": factory, "options": kwargs}

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """``factory(*args, **fixed, **converted options)`` of ``name``."""
        entry = self.entry(name)
        return entry.factory(*args, **{**entry.fixed, **self.convert_options(name, options)})

    def label(self, name: str, options: Mapping[str, Any] | None = None) -> str:
        """The display label of ``name`` with ``options`` (an unknown name is shown with its options)."""
        try:
            return self.entry(name).display(options)
        except InputError:
            return str(name) + option_suffix(dict(options or {}))

    def describe(self) -> dict[str, str]:
        """Name -> description, sorted by name."""
        return {e.name: e.description for e in self.entries()}


# -- converters for options given as strings on the command line --------------------------------------------
def as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    number = float(value.strip()) if isinstance(value, str) else value
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(number)
    return int(number)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _items(value: Any) -> list[Any]:
    """The items of a list option: ``"a,b"`` / ``"a;b"`` split (empty items dropped), a lone number, or any
    iterable's items."""
    if isinstance(value, str):
        return [s for s in value.replace(";", ",").split(",") if s.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return list(value)


def as_float_tuple(value: Any) -> tuple[float, ...]:
    return tuple(as_float(v) for v in _items(value))


def as_int_tuple(value: Any) -> tuple[int, ...]:
    """``"0,2"``, ``[0, 2]`` or ``2`` -> a tuple of ints (e.g. class indices)."""
    return tuple(as_int(v) for v in _items(value))


def as_is(value: Any) -> Any:
    """No conversion (the factory validates the value itself)."""
    return value


def fmt_number(x: Any) -> str:
    """``3.0`` -> ``"3"``, ``0.05`` -> ``"0.05"``, lists joined by commas (for labels)."""
    if isinstance(x, (list, tuple)):
        return ",".join(fmt_number(v) for v in x)
    return f"{float(x):g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)
