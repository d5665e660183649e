"""Typed, validated options for architectures, datasets and analyses.

Every plugin item declares its options as a tuple of :class:`Option`. Values
arrive either as Python objects (notebook API, TOML files) or as strings
(``--set KEY=VALUE`` on the command line); :func:`resolve_options` parses,
checks and fills in defaults in one place, so every error reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probe.errors import OptionError

_SCALAR_TYPES = (bool, int, float, str)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One declared option.

    Args:
        name: Option name, as used in ``--set OWNER.NAME=VALUE``.
        type: ``bool``, ``int``, ``float``, ``str`` or ``tuple`` (a list of
            ``item_type`` values; ``"1,2,3"`` on the command line).
        default: Value used when the option is not given; ``None`` means
            "not set" and is allowed only as a default.
        help: One line for ``probe ... --json`` listings and the docs.
        choices: Allowed values, if the option is an enumeration.
        minimum: Inclusive lower bound for numbers (and tuple items).
        maximum: Inclusive upper bound for numbers (and tuple items).
        item_type: Type of the items when ``type`` is ``tuple``.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    item_type: type | None = None

    def __post_init__(self) -> None:
        if self.type not in (*_SCALAR_TYPES, tuple):
            raise TypeError(f"option {self.name!r}: type must be bool/int/float/str/tuple, "
                            f"got {self.type!r}")
        if self.type is tuple and self.item_type not in _SCALAR_TYPES:
            raise TypeError(f"option {self.name!r}: tuple options need item_type, "
                            f"got {self.item_type!r}")
        if self.default is not None:
            object.__setattr__(self, "default", self.parse(self.default, "default"))

    def parse(self, value: Any, owner: str) -> Any:
        """Convert ``value`` (object or command-line string) and check it."""
        where = f"{owner}.{self.name}"
        if self.type is tuple:
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [value]
            assert self.item_type is not None
            return tuple(self._check(_convert(v, self.item_type, where), where) for v in items)
        return self._check(_convert(value, self.type, where), where)

    def _check(self, value: Any, where: str) -> Any:
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise OptionError(f"{where} must be >= {self.minimum}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                raise OptionError(f"{where} must be <= {self.maximum}, got {value!r}")
        return value

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for listings."""
        kind = self.type.__name__
        if self.type is tuple and self.item_type is not None:
            kind = f"list[{self.item_type.__name__}]"
        out: dict[str, Any] = {"name": self.name, "type": kind, "default": _jsonable(self.default),
                               "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _convert(value: Any, kind: type, where: str) -> Any:
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError(text)
            return kind(text)
        except ValueError:
            raise OptionError(f"{where} must be {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OptionError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class OptionSet:
    """The declared options of one plugin item, with lookup by name."""

    owner: str
    options: tuple[Option, ...] = field(default_factory=tuple)

    def resolve(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return every option's value: given ones parsed and checked, the rest defaulted."""
        return resolve_options(self.options, given or {}, self.owner)


def resolve_options(options: Sequence[Option], given: Mapping[str, Any],
                    owner: str) -> dict[str, Any]:
    """Parse and validate ``given`` against ``options``; fill in defaults.

    Raises:
        OptionError: for an unknown option name (listing the known ones) or a
            value of the wrong type or out of range.
    """
    by_name = {opt.name: opt for opt in options}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise OptionError(f"{owner} has no option {unknown[0]!r}; known options: {known}")
    resolved: dict[str, Any] = {}
    for opt in options:
        value = given.get(opt.name, opt.default)
        resolved[opt.name] = None if value is None else opt.parse(value, owner)
    return resolved


def parse_assignments(pairs: Sequence[str]) -> dict[str, dict[str, str]]:
    """Split ``["arch.width=0.5", "dissection.quantile=0.01"]`` by owner.

    Returns:
        ``{"arch": {"width": "0.5"}, "dissection": {"quantile": "0.01"}}``.
    """
    grouped: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        owner, dot, name = key.strip().partition(".")
        if not sep or not dot or not owner or not name:
            raise OptionError(f"--set expects OWNER.OPTION=VALUE (e.g. arch.width=0.5), "
                              f"got {pair!r}")
        grouped.setdefault(owner, {})[name] = value
    return grouped
