"""Optional dependencies (pip extras): import a provider's package, or stop with one line naming the extra to
install."""

from __future__ import annotations

import importlib
from types import ModuleType

from arastory.errors import ConfigError

# module imported -> (the distribution pip installs, the arastory extra that brings it)
EXTRAS: dict[str, tuple[str, str]] = {
    "openai": ("openai", "openai"),
    "google.cloud.translate_v2": ("google-cloud-translate", "google"),
    "vllm": ("vllm", "vllm"),
    "camel_tools": ("camel-tools", "camel"),
}


class MissingExtra(ConfigError):
    """A config picked a provider whose package is not installed."""

    def __init__(self, key: str, module: str):
        package, extra = EXTRAS[module]
        super().__init__(key, f"{package} is not installed; pip install 'arastory[{extra}]'")
        self.package, self.extra = package, extra


def require_extra(module: str, key: str) -> ModuleType:
    """`module` imported, or MissingExtra naming the config `key` that asked for it. A package that is installed but
    fails to import (a broken dependency of its own) raises its own error, not a misleading "not installed"."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and not (module == error.name or module.startswith(error.name + ".")):
            raise
        raise MissingExtra(key, module) from None
