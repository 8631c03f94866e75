"""Load a variety's prompt template (arastory/conf/variety/<name>.yaml); `inherits` lets a dialect list what differs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from arastory.errors import ConfigError
from arastory.paths import CONF_DIR
from arastory.plain import plain_dict

VARIETY_DIR = CONF_DIR / "variety"


@dataclass(frozen=True)
class Variety:
    """A variety's template sentences and localized feature values, keyed by canonical feature ids."""

    name: str
    display_name: str
    sentences: dict[str, str | None]
    values: dict[str, dict[str, str]]

    def inventory(self, feature: str) -> list[str]:
        """Canonical value ids a sampler may draw for `feature`, in config order."""
        return list(self.values[feature])


def available_varieties(directory: Path = VARIETY_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_variety(name: str, directory: Path = VARIETY_DIR) -> Variety:
    raw = _load_merged(name, directory, seen=())
    values = {feat: {str(k): v for k, v in vals.items() if v is not None} for feat, vals in raw["values"].items()}
    return Variety(
        name=raw["name"], display_name=raw.get("display_name", name), sentences=raw["sentences"], values=values
    )


def _load_merged(name: str, directory: Path, seen: tuple) -> dict:
    path = directory / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            "variety", f"'{name}' has no config {path}; available: {', '.join(available_varieties(directory))}"
        )
    if name in seen:
        raise ConfigError("variety", f"inheritance cycle through '{name}' ({path})")
    own = plain_dict(OmegaConf.load(path), resolve=True)
    parent_name = own.get("inherits")
    if not parent_name:
        return own
    parent = _load_merged(parent_name, directory, (*seen, name))
    merged = {**parent, **{k: v for k, v in own.items() if k not in ("sentences", "values")}}
    merged["sentences"] = {**parent["sentences"], **own.get("sentences", {})}
    merged["values"] = {
        feat: {**vals, **own.get("values", {}).get(feat, {})} for feat, vals in parent["values"].items()
    }
    return merged
