"""Shared command-line plumbing for the Hydra entry points: config resolvers, early override checks, one-line errors."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from omegaconf import OmegaConf

from arastory.errors import ArastoryError
from arastory.paths import CONF_DIR


def register_resolvers() -> None:
    """Resolvers used by conf/*.yaml (run dirs that follow `resume=` and `name=`)."""
    resolvers = {
        "run_dir": lambda resume, default: resume if resume else default,
        "hydra_subdir": lambda resume: ".hydra/resumed" if resume else ".hydra",
        "suffix": lambda name: f"_{name}" if name else "",
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def config_groups(conf_dir: Path = CONF_DIR, config_name: str | None = None) -> dict[str, list[str]]:
    """Config groups and their options; with `config_name`, only the groups that config's defaults list selects."""
    names = None if config_name is None else _default_groups(conf_dir / f"{config_name}.yaml")
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in conf_dir.iterdir()
            if d.is_dir() and (names is None or d.name in names)}


def _default_groups(primary: Path) -> set[str]:
    """Group names in a primary config's defaults list (`- data: bundled`, `- optional x: y`, `- a@b: c`)."""
    groups = set()
    for entry in OmegaConf.load(primary).get("defaults", []):
        if isinstance(entry, str) or entry is None:
            continue
        for key in entry:
            name = str(key).replace("optional ", "").replace("override ", "").lstrip("/").split("@")[0].strip()
            groups.add(name)
    return groups


def check_overrides(argv: list[str], config_name: str, conf_dir: Path = CONF_DIR) -> None:
    """Reject unknown config-group options (e.g. `strategy=foo`, `model=bar`) with one line, before Hydra starts."""
    groups = config_groups(conf_dir, config_name)
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        if key == "resume" and value and value != "null":
            if not (Path(value) / "config.yaml").exists():
                fail(f"config error: resume: '{value}' is not a run dir (no config.yaml in it)")
            if len([a for a in argv if not a.startswith("-")]) > 1:
                fail("config error: resume: takes no other overrides (the run continues with its saved config.yaml)")
        if key not in groups:
            continue
        for option in _sweep_values(value):
            if option not in groups[key] and option != "null":
                fail(f"config error: {key}: '{option}' is not one of: {', '.join(groups[key])}")


def _sweep_values(value: str) -> list[str]:
    """`direct,sequential` → both; `choice(a,b)` → both."""
    value = value.strip()
    if value.startswith(("choice(", "range(")) and value.endswith(")"):
        value = value[value.index("(") + 1:-1]
    return [v.strip() for v in value.split(",") if v.strip()]


def fail(message: str, code: int = 2) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def one_line_errors(fn):
    """Print ArastoryError as its one-line message and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArastoryError as error:
            fail(str(error))
    return wrapper
