"""Shared command-line plumbing for the Hydra entry points: config resolvers, early override checks, one-line errors,
and the out-dir guard (one writer per dir, a secret-free record of the config in `.hydra/`)."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, NoReturn, ParamSpec, TypeVar

from omegaconf import DictConfig, OmegaConf

from arastory.errors import ArastoryError
from arastory.paths import CONF_DIR
from arastory.plain import dict_config

if TYPE_CHECKING:
    from hydra.conf import HydraConf

P = ParamSpec("P")
R = TypeVar("R")


def register_resolvers() -> None:
    """Resolvers used by arastory/conf/*.yaml (run dirs that follow `resume=` and `name=`)."""
    import warnings

    # arastory/conf/hydra/launcher/submitit_*.yaml are meant to be checked against the plugin's schema of the same name.
    warnings.filterwarnings("ignore", message=r"(?s).*hydra/launcher/\w+' is validated against ConfigStore schema")
    resolvers = {
        # the first given dir (resume=, out=), else a fresh dir under the dated default
        "run_dir": lambda *dirs: next((d for d in dirs[:-1] if d), None) or fresh_dir(dirs[-1]),
        "fresh_dir": fresh_dir,
        "hydra_subdir": lambda resume: ".hydra/resumed" if resume else ".hydra",
        "suffix": lambda name: f"_{name}" if name else "",
        "shard_dir": _shard_resolver("shard_dir"),  # <out>/shards/<i>-of-<n> for shard=i/n (data stages)
        "shard_subdir": _shard_resolver("shard_subdir"),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            # Cached in the config: a launcher that runs jobs in other processes (submitit, joblib) pickles the
            # config with its cache, so every job finds the sweep dir the launching process created.
            OmegaConf.register_new_resolver(name, fn, use_cache=name in ("run_dir", "fresh_dir"))


def _shard_resolver(name: str) -> Callable[..., str | None]:
    def resolve(*args: str) -> str | None:
        from arastory.data import shards

        return getattr(shards, name)(*args)

    return resolve


_FRESH_DIRS: dict[str, str] = {}


def fresh_dir(base: str) -> str:
    """`base`, or `base_2`, `base_3`, ...: a dir this process created itself, so two runs started in the same second
    never share a run dir. Hydra resolves the run dir more than once; the first answer is kept for the process."""
    base = str(base)
    if base not in _FRESH_DIRS:
        Path(base).parent.mkdir(parents=True, exist_ok=True)
        candidate, n = base, 1
        while True:
            try:
                os.mkdir(candidate)
                break
            except FileExistsError:
                n += 1
                candidate = f"{base}_{n}"
        _FRESH_DIRS[base] = candidate
    return _FRESH_DIRS[base]


def config_groups(conf_dir: Path = CONF_DIR, config_name: str | None = None) -> dict[str, list[str]]:
    """Config groups and their options; with `config_name`, only the groups that config's defaults list selects."""
    names = None if config_name is None else set(_default_choices(conf_dir / f"{config_name}.yaml"))
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in conf_dir.iterdir()
        if d.is_dir() and (names is None or d.name in names)
    }


def check_overrides(
    argv: list[str], config_name: str, conf_dir: Path = CONF_DIR, hydra_names: dict[str, str] | None = None
) -> None:
    """Reject unknown config-group options (e.g. `strategy=foo`, `model=bar`) with one line, before Hydra starts.
    `--help` shows this command's own help (focused_help) and exits; `--hydra-help` is Hydra's. `hydra_names` maps a
    public name to the group it selects (see renamed_overrides); errors name the public one."""
    if "--help" in argv or "-h" in argv:
        try:
            print(focused_help(config_name, conf_dir))
        except BrokenPipeError:  # `--help | head`
            pass
        sys.exit(0)
    check_no_secrets(argv)
    groups = config_groups(conf_dir, config_name)
    for extra in user_config_dirs(argv):  # a user's own options extend the packaged groups
        for group, options in config_groups(extra).items():
            if group in groups:
                groups[group] = sorted(set(groups[group]) | set(options))
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        if key == "resume" and value and value != "null":
            if not (Path(value) / "config.yaml").exists():
                fail(f"config error: resume: '{value}' is not a run dir (no config.yaml in it)")
            if len([a for a in argv if not a.startswith("-")]) > 1:
                fail("config error: resume: takes no other overrides (the run continues with its saved config.yaml)")
        if key == "shard":  # resolved into run dirs before any task starts: checked here, one line
            from arastory.data.shards import Shard

            for option in _sweep_values(value):
                try:
                    Shard.parse(option)
                except ArastoryError as error:
                    fail(str(error))
        group = (hydra_names or {}).get(key, key)
        if group not in groups:
            continue
        for option in _sweep_values(value):
            if option not in groups[group] and option != "null":
                fail(f"config error: {key}: '{option}' is not one of: {', '.join(groups[group])}")


def focused_help(config_name: str, conf_dir: Path = CONF_DIR) -> str:
    """One command's help: what it does, the groups *its* defaults list selects (each option with its file's first
    comment line, the default marked), and its own settings with their comments, instead of every group in
    arastory/conf/."""
    primary = conf_dir / f"{config_name}.yaml"
    text = primary.read_text(encoding="utf-8")
    header = [line[2:] for line in _leading_comments(text)]
    defaults = _default_choices(primary)
    lines = [*header, "", "Config groups (pick one with group=option; * marks the default):"]
    for group, options in config_groups(conf_dir, config_name).items():
        lines.append(f"  {group}:")
        width = max(map(len, options))
        for option in options:
            marker = "*" if defaults.get(group) == option else " "
            first = next(
                iter(_leading_comments((conf_dir / group / f"{option}.yaml").read_text(encoding="utf-8"))), "#"
            )
            lines.append(f"   {marker}{option:<{width}}  {first[2:]}")
    lines += [
        "",
        "Settings (override with key=value; comments from " + f"{primary.name}):",
        *_settings(text),
        "",
        "Hydra: --cfg job prints the composed config, -m sweeps comma-separated values, --hydra-help is Hydra's "
        "own help.",
    ]
    return "\n".join(lines)


def _leading_comments(text: str) -> list[str]:
    """A config file's opening comment lines (what it is for, and a command that uses it)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):  # a Hydra directive, not a description
            lines.append(line)
    return lines


def _settings(text: str) -> list[str]:
    """The primary config's own keys with their comments: all but the defaults list and the `hydra:` block."""
    body, skipping = [], False
    for line in text.splitlines()[len(_leading_comments(text)) :]:
        if line.startswith(("defaults:", "hydra:")):
            skipping = True
            continue
        if skipping and (line.startswith((" ", "-")) or not line.strip()):
            continue
        skipping = False
        body.append("  " + line if line.strip() else "")
    while body and not body[-1]:
        body.pop()
    return body


def _default_choices(primary: Path) -> dict[str, str]:
    """`{group: option}` from a primary config's defaults list (`- data: bundled`, `- optional x: y`, `- a@b: c`)."""
    choices = {}
    for entry in dict_config(OmegaConf.load(primary)).get("defaults", []):
        if isinstance(entry, str) or entry is None:
            continue
        for key, value in entry.items():
            name = str(key).replace("optional ", "").replace("override ", "").lstrip("/").split("@")[0].strip()
            choices[name] = str(value)
    return choices


def user_config_dirs(argv: list[str]) -> list[Path]:
    """Config dirs a user adds on the command line: `--config-dir D` / `-cd D` and `hydra.searchpath=[file://D,...]`."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith(("--config-dir=", "-cd=")):
            dirs.append(arg.split("=", 1)[1])
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            entries = arg.split("=", 1)[1].strip("[]").split(",")
            dirs += [e.strip()[len("file://") :] for e in entries if e.strip().startswith("file://")]
    return [Path(d) for d in dirs if Path(d).is_dir()]


def check_no_secrets(argv: list[str]) -> None:
    """Refuse an override that names a secret key or carries a key-shaped value, without echoing the value: keys are
    read from the environment only, so none ever reaches a config dump, a log or an error message."""
    from arastory.redact import is_secret_key, looks_secret

    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith("-"):
            continue
        key = key.lstrip("+~")
        if is_secret_key(key.rsplit(".", 1)[-1]):
            fail(
                f"config error: {key}: secrets are never taken from the command line or a config file; put the key "
                "in the environment variable the config names (e.g. generator.api_key_env=OPENAI_API_KEY)"
            )
        if looks_secret(value):
            fail(
                f"config error: {key}: the value looks like an API key or token (value not shown); secrets are read "
                "from environment variables only"
            )


def _sweep_values(value: str) -> list[str]:
    """`direct,sequential` → both; `choice(a,b)` → both."""
    value = value.strip()
    if value.startswith(("choice(", "range(")) and value.endswith(")"):
        value = value[value.index("(") + 1 : -1]
    return [v.strip() for v in value.split(",") if v.strip()]


def fail(message: str, code: int = 2) -> NoReturn:
    from arastory.redact import scrub

    print(scrub(message), file=sys.stderr)
    sys.exit(code)


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print ArastoryError as its one-line message and exit with its code (2: bad input or config), instead of a
    traceback; an object the config could not build (`_target_` raised) is one line naming its config key."""
    from hydra.errors import InstantiationException

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ArastoryError as error:
            fail(str(error), getattr(error, "exit_code", 2))
        except InstantiationException as error:
            fail(instantiation_message(error))

    return wrapper


def instantiation_message(error: Exception) -> str:
    """`config error: <key>: <first line of the cause>` for Hydra's multi-line InstantiationException."""
    cause = error.__cause__
    if isinstance(cause, ArastoryError):
        return str(cause)
    key = re.search(r"full_key:\s*(\S+)", str(error))
    text = str(cause or error).strip()
    first = text.splitlines()[0] if text else type(cause or error).__name__
    return f"config error: {key.group(1) if key else 'config'}: {first[:300]}"


def guard_out_dir(fn: Callable[Concatenate[DictConfig, P], R]) -> Callable[Concatenate[DictConfig, P], R]:
    """Run the Hydra task holding its output dir's lock (a second writer stops with one line naming the holder's
    pid), after writing Hydra's record of the run to `.hydra/` (or `.hydra/resumed/`) with secrets redacted.

    The primary configs set `hydra.output_subdir: null`, so Hydra itself writes nothing there before the lock is held.
    """

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig, *args: P.args, **kwargs: P.kwargs) -> R:
        from hydra.core.hydra_config import HydraConfig

        from arastory.io import DirLock

        hydra_cfg = HydraConfig.get()
        out = Path(hydra_cfg.runtime.output_dir)
        with DirLock(out):
            subdir = ".hydra/resumed" if cfg.get("resume") else ".hydra"
            write_hydra_record(out / subdir, cfg, hydra_cfg)
            return fn(cfg, *args, **kwargs)

    return wrapper


def guard_run_dir(fn: Callable[Concatenate[DictConfig, P], R]) -> Callable[Concatenate[DictConfig, P], R]:
    """`guard_out_dir` for an entry point whose processes train together when SLURM or torchrun start them all:
    rank 0 takes the run dir's lock and writes the record; the other ranks work in the dir rank 0 holds."""
    guarded = guard_out_dir(fn)

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig, *args: P.args, **kwargs: P.kwargs) -> R:
        from arastory.train.ranks import env_rank

        return (fn if env_rank() > 0 else guarded)(cfg, *args, **kwargs)

    return wrapper


def write_hydra_record(where: Path, cfg: DictConfig, hydra_cfg: HydraConf) -> None:
    """config.yaml, hydra.yaml and overrides.yaml as Hydra writes them (unresolved), secrets redacted; in a
    multirun, the sweep's multirun.yaml (written by Hydra before any job) is redacted in place."""
    from hydra.types import RunMode

    from arastory.io import atomic_write_text
    from arastory.redact import redact, redact_override

    def dump(obj: object) -> str:
        return OmegaConf.to_yaml(OmegaConf.create(redact(obj)))

    atomic_write_text(where / "config.yaml", dump(OmegaConf.to_container(cfg, resolve=False)))
    atomic_write_text(where / "hydra.yaml", dump({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)}))
    overrides = [redact_override(str(o)) for o in hydra_cfg.overrides.task]
    atomic_write_text(where / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
        if sweep.exists():
            text = sweep.read_text(encoding="utf-8")
            clean = dump(OmegaConf.to_container(OmegaConf.create(text), resolve=False))
            if clean != text:
                atomic_write_text(sweep, clean)


def quiet_http_logs() -> None:
    """Hydra logs at INFO; one line per HTTP request (httpx, openai) would bury the progress bar and the log file."""
    import logging

    for name in ("httpx", "httpx2", "httpcore", "openai", "urllib3", "google"):
        logging.getLogger(name).setLevel(logging.WARNING)


def renamed_overrides(argv: list[str], renamed: dict[str, str], hydra_names: dict[str, str] | None = None) -> list[str]:
    """Command-line overrides under one vocabulary: an old setting name (`renamed`: old -> new) is rewritten to the
    new one with a one-line note on stderr; `hydra_names` then maps a public name to the config key or group that
    holds it (e.g. synthesize's `dialect` is its `variety` group), silently. Prefixes (`+`, `~`, `++`) are kept."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        name = key.lstrip("+~")
        prefix = key[: len(key) - len(name)]
        if not sep or arg.startswith("-"):
            out.append(arg)
            continue
        if name in renamed:
            print(f"note: {name}= is now {renamed[name]}= (the old name still works)", file=sys.stderr)
            name = renamed[name]
        name = (hydra_names or {}).get(name, name)
        out.append(f"{prefix}{name}={value}")
    return out
