"""Fail-fast configuration checks, run before any data is read or model built: one line naming the key.

Each group's types, ranges and choices are dataclass schemas (Structured Configs, arastory.schema.typed);
checks that span keys or look at the disk are code."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from omegaconf import MISSING, DictConfig

from arastory.errors import ConfigError
from arastory.schema import typed
from arastory.train.data import DIALECTS
from arastory.train.ranks import check_batch_split, world_size

SCHEDULES = ("constant", "linear", "cosine")


# Built from the varieties list so a new variety is a valid dialect= without editing this file (mypy cannot see its
# members, hence the ignores where it is used as a type).
Dialect = Enum("Dialect", {name: name for name in DIALECTS}, type=str)  # type: ignore[misc]


class Attention(str, Enum):
    auto = "auto"
    sdpa = "sdpa"
    eager = "eager"
    flash_attention_2 = "flash_attention_2"


class Overflow(str, Enum):
    truncate = "truncate"
    drop = "drop"


@dataclass
class RunSettings:
    """The top-level keys of train.yaml that are checked by type (the groups have their own schemas)."""

    dialect: Dialect = MISSING
    seed: int = 42
    batch_size: int = MISSING

    def __post_init__(self) -> None:
        _check_positive("batch_size", self.batch_size)


@dataclass
class PeftSettings:
    """`peft:` (a peft.LoraConfig): the keys arastory checks; the others go to LoraConfig as they are."""

    r: int = MISSING
    lora_alpha: float = MISSING
    lora_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError("peft.r", f"must be a positive integer, got {self.r}")
        if self.lora_alpha <= 0:
            raise ConfigError("peft.lora_alpha", f"must be positive, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError("peft.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")


@dataclass
class DataSettings:
    """`data:` beyond its sources (data.synthetic, data.translated) and data.filter, which have their own checks."""

    val_fraction: float = 0.1
    split_seed: int | None = 0
    max_length: Any = 1024  # a positive integer or auto (OmegaConf types have no int-or-string union)
    overflow: Overflow = Overflow.truncate
    packing: bool = False
    packing_max_tokens: int | None = None
    group_by_length: bool = False
    token_cache: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ConfigError("data.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        if self.max_length != "auto" and (type(self.max_length) is not int or self.max_length <= 0):
            raise ConfigError("data.max_length", f"must be a positive integer or auto, got {self.max_length}")
        if self.packing_max_tokens is not None and self.packing_max_tokens <= 0:
            raise ConfigError(
                "data.packing_max_tokens", f"must be a positive integer or null, got {self.packing_max_tokens}"
            )


@dataclass
class ModelSettings:
    """`model:` keys checked by type; name_or_path is checked against the disk or the hub by check_model_path."""

    attn_implementation: Attention | None = Attention.auto  # null: the remote code's own
    gradient_checkpointing: Any = False  # true | false | auto
    liger: bool = False
    compile: bool = False
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.gradient_checkpointing not in (True, False, "auto"):
            raise ConfigError(
                "model.gradient_checkpointing", f"must be true, false or auto, got {self.gradient_checkpointing}"
            )


@dataclass
class StageSettings:
    """One entry of `strategy.stages`; which data it names is checked against the data config by _check_stages."""

    name: str = MISSING
    data: str = MISSING
    lr: float = MISSING
    max_epochs: int | None = None
    max_steps: int | None = -1


def check_config(cfg: DictConfig) -> None:
    typed(cfg, RunSettings, "", closed=False)
    typed(cfg.peft, PeftSettings, "peft", closed=False)
    optim_settings(cfg.optim)
    check_batch_split(cfg.batch_size, world_size(cfg.trainer))  # the global batch, split over the processes
    typed(cfg.data, DataSettings, "data", closed=False)
    typed(cfg.model, ModelSettings, "model", closed=False)
    _check_speed(cfg)
    for name in ("synthetic", "translated"):
        size = cfg.data[name].get("size")
        if size is not None and (type(size) is not int or size <= 0):
            raise ConfigError(f"data.{name}.size", f"must be a positive integer or null, got {size}")
    _check_stages(cfg)
    if not cfg.model.get("tiny"):
        if not cfg.model.get("name_or_path"):
            raise ConfigError("model.name_or_path", "is empty; name an HF id or a local path")
        from arastory.train.model import check_model_path

        check_model_path(str(cfg.model.name_or_path))


def _check_stages(cfg: DictConfig) -> None:
    if not cfg.strategy.stages:
        raise ConfigError("strategy.stages", "is empty; a strategy needs at least one stage")
    data_names = [k for k in cfg.data if isinstance(cfg.data[k], DictConfig) and "_target_" in cfg.data[k]]
    for k, entry in enumerate(cfg.strategy.stages):
        key = f"strategy.stages[{k}]"
        stage = typed(entry, StageSettings, key)
        if stage.data not in data_names:
            raise ConfigError(f"{key}.data", f"'{stage.data}' is not one of: {', '.join(data_names)}")
        _check_positive(f"{key}.lr", stage.lr)
        if stage.max_steps in (None, -1) and (stage.max_epochs is None or stage.max_epochs <= 0):
            raise ConfigError(f"{key}.max_epochs", "set max_epochs > 0 or max_steps > 0")


def _check_speed(cfg: DictConfig) -> None:
    """Packing, attention and the optional speed-ups, across keys (each key's own type: DataSettings, ModelSettings)."""
    data, model = cfg.data, cfg.model
    budget = data.get("packing_max_tokens")
    if budget is not None and isinstance(data.max_length, int) and budget < data.max_length:
        raise ConfigError(
            "data.packing_max_tokens",
            f"{budget} is below data.max_length={data.max_length}: a row must hold the longest example",
        )
    if data.get("packing") and model.attn_implementation is None:
        raise ConfigError(
            "data.packing",
            "needs model.attn_implementation auto, sdpa, eager or flash_attention_2 to keep "
            "packed examples apart (this model's remote code picks its own attention); "
            "set data.packing=false",
        )
    if model.get("liger"):
        import importlib.util

        if importlib.util.find_spec("liger_kernel") is None:
            raise ConfigError(
                "model.liger",
                "liger-kernel is not installed (`pip install liger-kernel`, GPU only); set model.liger=false",
            )
        if cfg.trainer.get("accelerator") == "cpu":
            raise ConfigError("model.liger", "Liger kernels run on a GPU only; set model.liger=false with trainer=cpu")


@dataclass
class OptimSettings:
    """`optim:` of train.yaml as a Structured Config: OmegaConf checks each value's type (and refuses unknown keys)
    when the YAML is merged onto it; `__post_init__` checks the ranges when it becomes this object."""

    lr: float = MISSING
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"  # one of SCHEDULES
    fused: Any = "auto"  # true | false | auto (OmegaConf types have no bool-or-string union)

    def __post_init__(self) -> None:
        _check_positive("optim.lr", self.lr)
        if self.weight_decay < 0:
            raise ConfigError("optim.weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ConfigError("optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("optim.schedule", f"'{self.schedule}' is not one of: {', '.join(SCHEDULES)}")
        if self.fused not in (True, False, "auto"):
            raise ConfigError("optim.fused", f"must be true, false or auto, got {self.fused}")


def optim_settings(optim: DictConfig) -> OptimSettings:
    """The `optim` block typed and checked; a wrong type or an unknown key is one line naming `optim.<key>`."""
    return typed(optim, OptimSettings, "optim")


def _check_positive(key: str, value) -> None:
    if value is None or value <= 0:
        raise ConfigError(key, f"must be > 0, got {value}")
