"""Config sections checked against dataclass schemas (Hydra Structured Configs): a wrong type, an unknown key or a
value outside a choice (Enum) is one ConfigError line naming the full key, the value and what is allowed."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from arastory.errors import ConfigError

T = TypeVar("T")
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def typed(section: Any, schema: type[T], key: str, *, closed: bool = True) -> T:
    """`section` (the config at `key`) merged onto `schema` and built into it, so that `__post_init__` checks what
    types cannot. `_target_` keys are dropped (the schema is the target). closed=False leaves keys the schema does
    not declare to their consumer (e.g. peft.LoraConfig's other arguments) instead of refusing them."""
    if not closed:  # before resolving: interpolations elsewhere in the section are not this schema's business
        section = {f.name: section[f.name] for f in fields(schema) if f.name in section}  # type: ignore[arg-type]
    values = _plain(section)
    try:
        return typing.cast(T, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values)))
    except ConfigKeyError as error:
        parent = str(error.full_key).rpartition(".")[0]
        names = ", ".join(f.name for f in fields(_type_at(schema, _parts(parent))))
        where = _join(key, parent) or "the config"
        raise ConfigError(_join(key, error.full_key), f"is not a setting of {where} (one of: {names})") from None
    except MissingMandatoryValue as error:
        raise ConfigError(_join(key, error.full_key), "is required") from None
    except ValidationError as error:
        kind = _type_at(schema, _parts(str(error.full_key)))
        raise ConfigError(_join(key, error.full_key), _wrong_value(error.value, kind)) from None


def _plain(section: Any) -> Any:
    """Resolved plain containers without `_target_` keys (interpolations may point outside the section)."""
    if isinstance(section, (DictConfig, ListConfig)):
        section = OmegaConf.to_container(section, resolve=True)
    if isinstance(section, dict):
        return {k: _plain(v) for k, v in section.items() if k != "_target_"}
    if isinstance(section, (list, tuple)):
        return [_plain(v) for v in section]
    return section


def _parts(full_key: str) -> list[str | int]:
    """`stages[0].lr` -> ["stages", 0, "lr"]."""
    return [int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", full_key)]


def _type_at(schema: Any, parts: list[str | int]) -> Any:
    """The declared type at a path of field names and list indices (None where it is not declared)."""
    kind: Any = schema
    for part in parts:
        kind = _unwrap(kind)
        if isinstance(part, int):
            args = typing.get_args(kind)
            kind = args[0] if args else None
        elif is_dataclass(kind):
            kind = typing.get_type_hints(kind).get(part)
        else:
            return None
    return kind


def _unwrap(kind: Any) -> Any:
    """Optional[X] -> X (the null is allowed by the schema itself)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind


def _wrong_value(value: Any, kind: Any) -> str:
    optional = type(None) in typing.get_args(kind)
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, Enum):
        choices = [m.value for m in kind] + (["null"] if optional else [])
        return f"'{value}' is not one of: {', '.join(map(str, choices))}"
    name = TYPE_NAMES.get(typing.get_origin(kind) or kind, str(kind))
    return f"must be {name}{' or null' if optional else ''}, got {value}"


def _join(key: str, full_key: Any) -> str:
    rest = str(full_key)
    if not key or not rest:
        return key or rest
    return f"{key}{'' if rest.startswith('[') else '.'}{rest}"
