"""Config nodes with the types their callers rely on: the one place that checks what OmegaConf gave back."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def plain_dict(node: Any, resolve: bool = False) -> dict[str, Any]:
    """A DictConfig (or a dict) as a plain dict; a list, a scalar or None is a TypeError naming what it got."""
    value = OmegaConf.to_container(node, resolve=resolve) if OmegaConf.is_config(node) else node
    if not isinstance(value, dict):
        raise TypeError(f"expected a mapping, got {type(value).__name__}: {value!r}")
    return {str(k): v for k, v in value.items()}


def dict_config(node: Any) -> DictConfig:
    """`node` (what OmegaConf.load or OmegaConf.merge returned) as the DictConfig it must be; a list is a TypeError."""
    if not isinstance(node, DictConfig):
        raise TypeError(f"expected a mapping config, got {type(node).__name__}")
    return node
