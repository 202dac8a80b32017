"""Typed, validated model parameters.

Each implementation (a `BatchedModel` subclass, named by the config's `implementation`
parameter) declares its parameters as a frozen dataclass deriving from `ModelParameters`:
a type, a default and a docstring per field, checks in `__post_init__`. At load,
`parse_parameters` turns the config's string parameters into it, so an unknown name or a
bad value fails the load naming it -- a typo never falls back to a default silently.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from prelabel.core.labels import CUSTOM_LABEL_MAP, LABEL_MAPS
from services.modelkit.contract import HEADS, string_parameters


class ParameterError(ValueError):
    """A model config's parameters do not fit its implementation."""


def require(ok: bool, name: str, value: object, why: str) -> None:
    """A `__post_init__` check: raise ParameterError naming the parameter unless `ok`."""
    if not ok:
        raise ParameterError(f"parameter {name!r} = {value!r}: {why}")


@dataclass(frozen=True, kw_only=True)
class ModelParameters:
    """Parameters every model config has."""

    head: str
    """The contract head its tensors implement (services.modelkit.contract.HEADS)."""

    implementation: str
    """Import path `module:Class` of the model code, a BatchedModel subclass
    (services.modelkit.entrypoint resolves it)."""

    label_map: str = ""
    """Names of the category ids in LABELS (prelabel.core.labels.LABEL_MAPS, or "custom":
    the implementation's `names` parameter); the services read it from Triton's config."""

    num_threads: int = 0
    """CPU threads of one instance; 0 keeps the libraries' default (every core). Instances
    that each use every core fight: the CPU profile sets 1."""

    def __post_init__(self) -> None:
        require(self.head in HEADS, "head", self.head, f"expected one of {sorted(HEADS)}")
        require(not self.label_map or self.label_map in (*LABEL_MAPS, CUSTOM_LABEL_MAP), "label_map",
                self.label_map, f"expected one of {sorted(LABEL_MAPS) + [CUSTOM_LABEL_MAP]}")
        require(self.num_threads >= 0, "num_threads", self.num_threads, "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class BoxFloorParameters(ModelParameters):
    """Parameters of a model that keeps candidates above a score floor."""

    box_score_floor: float = 0.05
    """Candidates the model keeps (after NMS) before the caller's score_threshold applies."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.box_score_floor <= 1.0, "box_score_floor", self.box_score_floor, "must be in [0, 1]")


P = TypeVar("P", bound=ModelParameters)

_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _convert(kind: object, text: str) -> object:
    if kind is bool:
        return _BOOLEANS[text.strip().lower()]
    if kind in (int, float, str):
        return kind(text)  # type: ignore[operator]
    raise TypeError(f"parameters of type {kind} are not supported (int, float, str, bool)")


def parse_parameters(cls: type[P], config: dict) -> P:
    """The config's parameters (Triton's JSON form) as a `cls`; ParameterError names the
    model and the parameter when a name is unknown, a value does not convert or a check
    fails."""
    model = config.get("name", "?")
    given = string_parameters(config)
    types = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in sorted(set(given) - set(fields)):
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParameterError(f"{model}: unknown parameter {name!r} for {cls.__name__} "
                             f"(known: {', '.join(sorted(fields))}){hint}")
    values: dict[str, Any] = {}
    for name, text in given.items():
        try:
            values[name] = _convert(types[name], text)
        except (ValueError, KeyError):
            raise ParameterError(f"{model}: parameter {name!r} = {text!r} is not a valid "
                                 f"{getattr(types[name], '__name__', types[name])}") from None
    missing = [f.name for f in fields.values() if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ParameterError(f"{model}: {cls.__name__} needs parameter(s) {', '.join(missing)}")
    try:
        return cls(**values)
    except ParameterError as exc:
        raise ParameterError(f"{model}: {exc}") from None
