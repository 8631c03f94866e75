"""Fail-fast configuration checks, run before any data is read or model built: one line naming the key."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, cast

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from arastory.errors import ConfigError
from arastory.train.data import DIALECTS
from arastory.train.ranks import check_batch_split, world_size

SCHEDULES = ("constant", "linear", "cosine")


def check_config(cfg: DictConfig) -> None:
    if cfg.dialect not in DIALECTS:
        raise ConfigError("dialect", f"'{cfg.dialect}' is not one of: {', '.join(DIALECTS)}")
    if not cfg.peft.r or cfg.peft.r <= 0:
        raise ConfigError("peft.r", f"must be a positive integer, got {cfg.peft.r}")
    if cfg.peft.lora_alpha <= 0:
        raise ConfigError("peft.lora_alpha", f"must be positive, got {cfg.peft.lora_alpha}")
    if not 0 <= cfg.peft.lora_dropout < 1:
        raise ConfigError("peft.lora_dropout", f"must be in [0, 1), got {cfg.peft.lora_dropout}")
    optim_settings(cfg.optim)
    _check_positive("batch_size", cfg.batch_size)
    check_batch_split(cfg.batch_size, world_size(cfg.trainer))  # the global batch, split over the processes
    split_seed = cfg.data.get("split_seed")
    if split_seed is not None and not isinstance(split_seed, int):
        raise ConfigError("data.split_seed", f"must be an integer, got {split_seed}")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError("data.val_fraction", f"must be in (0, 1), got {cfg.data.val_fraction}")
    if cfg.data.max_length != "auto":
        if not isinstance(cfg.data.max_length, int) or cfg.data.max_length <= 0:
            raise ConfigError("data.max_length", f"must be a positive integer or auto, got {cfg.data.max_length}")
    _check_speed(cfg)
    for name in ("synthetic", "translated"):
        size = cfg.data[name].get("size")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ConfigError(f"data.{name}.size", f"must be a positive integer or null, got {size}")
    _check_stages(cfg)
    if not cfg.model.get("tiny"):
        if not cfg.model.get("name_or_path"):
            raise ConfigError("model.name_or_path", "is empty; name an HF id or a local path")
        from arastory.train.model import check_model_path

        check_model_path(str(cfg.model.name_or_path))


def _check_stages(cfg: DictConfig) -> None:
    stages = cfg.strategy.stages
    if not stages:
        raise ConfigError("strategy.stages", "is empty; a strategy needs at least one stage")
    data_names = [k for k in cfg.data if isinstance(cfg.data[k], DictConfig) and "_target_" in cfg.data[k]]
    for k, stage in enumerate(stages):
        key = f"strategy.stages[{k}]"
        if stage.data not in data_names:
            raise ConfigError(f"{key}.data", f"'{stage.data}' is not one of: {', '.join(data_names)}")
        _check_positive(f"{key}.lr", stage.lr)
        if stage.max_steps in (None, -1) and (stage.max_epochs is None or stage.max_epochs <= 0):
            raise ConfigError(f"{key}.max_epochs", "set max_epochs > 0 or max_steps > 0")


ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2", None)


def _check_speed(cfg: DictConfig) -> None:
    """Packing, attention and the optional speed-ups (the keys are absent from run dirs made before them)."""
    data, model = cfg.data, cfg.model
    budget = data.get("packing_max_tokens")
    if budget is not None:
        if not isinstance(budget, int) or budget <= 0:
            raise ConfigError("data.packing_max_tokens", f"must be a positive integer or null, got {budget}")
        if isinstance(data.max_length, int) and budget < data.max_length:
            raise ConfigError(
                "data.packing_max_tokens",
                f"{budget} is below data.max_length={data.max_length}: a row must hold the longest example",
            )
    if model.attn_implementation not in ATTENTION:
        raise ConfigError(
            "model.attn_implementation",
            f"'{model.attn_implementation}' is not one of: auto, sdpa, eager, flash_attention_2, null",
        )
    if data.get("packing") and model.attn_implementation is None:
        raise ConfigError(
            "data.packing",
            "needs model.attn_implementation auto, sdpa, eager or flash_attention_2 to keep "
            "packed examples apart (this model's remote code picks its own attention); "
            "set data.packing=false",
        )
    if model.get("gradient_checkpointing") not in (True, False, "auto"):
        raise ConfigError(
            "model.gradient_checkpointing", f"must be true, false or auto, got {model.gradient_checkpointing}"
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


TYPE_NAMES = {"float": "a number", "int": "an integer", "str": "a string"}


def optim_settings(optim: DictConfig) -> OptimSettings:
    """The `optim` block typed and checked; a wrong type or an unknown key is one line naming `optim.<key>`."""
    try:
        return cast(OptimSettings, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OptimSettings), optim)))
    except ConfigKeyError as error:
        names = ", ".join(f.name for f in fields(OptimSettings))
        raise ConfigError(f"optim.{error.key}", f"is not an optim setting (one of: {names})") from None
    except ValidationError as error:
        kind = {f.name: str(f.type) for f in fields(OptimSettings)}.get(str(error.key), "")
        value = OmegaConf.select(optim, str(error.key)) if error.key is not None else None
        raise ConfigError(f"optim.{error.key}", f"must be {TYPE_NAMES.get(kind, kind)}, got {value}") from None


def _check_positive(key: str, value) -> None:
    if value is None or value <= 0:
        raise ConfigError(key, f"must be > 0, got {value}")
