"""Build the filter from config: settings, the encoder (arastory/conf/encoder name or `_target_` dict), the input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arastory.errors import ConfigError
from arastory.filter.pipeline import FilterSettings
from arastory.paths import CONF_DIR
from arastory.plain import dict_config
from arastory.schema import typed

if TYPE_CHECKING:
    from arastory.filter.encoders import PairEncoder


def settings_from_config(section: DictConfig, key: str = "filter") -> FilterSettings:
    """FilterSettings from a `filter` (CLI) or `data.filter` (training) section, typed by its dataclass schema
    (arastory.schema.typed): a wrong type or an unknown key in checks, dedup or leakage is one line naming it."""
    try:
        return typed(section, FilterSettings, "filter", closed=False)  # data.filter also holds the encoder's keys
    except ConfigError as error:  # name the key as the user wrote it (filter.* or data.filter.*)
        message = str(error).split(f"{error.key}: ", 1)[-1]
        raise ConfigError(error.key.replace("filter", key, 1), message) from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def encoder_config(spec: str | DictConfig | dict, overrides: dict | None = None, key: str = "encoder") -> DictConfig:
    """A name from arastory/conf/encoder/ (e.g. `lexicon`, `labse`) or an inline config with `_target_`."""
    if isinstance(spec, str):
        path = CONF_DIR / "encoder" / f"{spec}.yaml"
        if not path.exists():
            options = ", ".join(sorted(p.stem for p in (CONF_DIR / "encoder").glob("*.yaml")))
            raise ConfigError(key, f"'{spec}' is not one of: {options}")
        cfg = OmegaConf.load(path)
    else:
        cfg = OmegaConf.create(OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else spec)
    if overrides:
        cfg = OmegaConf.merge(cfg, overrides)
    if "_target_" not in cfg:
        raise ConfigError(key, "needs a `_target_` (an encoder class) or the name of a arastory/conf/encoder/*.yaml")
    return dict_config(cfg)


def build_encoder(cfg: DictConfig, key: str = "encoder") -> PairEncoder:
    try:
        return instantiate(cfg, _convert_="all")
    except Exception as error:
        from arastory.errors import ArastoryError

        cause = error.__cause__ if isinstance(error.__cause__, ArastoryError) else None
        if isinstance(error, ArastoryError):
            raise
        raise cause or ConfigError(key, _first_line(error)) from None


def input_path(value: str) -> Path:
    """`bundled` is the parallel set shipped in arastory/data/bundled/; anything else is a path."""
    if value == "bundled":
        from arastory.data.bundled import PARALLEL_FILE

        return PARALLEL_FILE
    return Path(value)
