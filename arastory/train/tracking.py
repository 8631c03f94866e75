"""Experiment tracking: W&B (offline unless asked) with its run id kept in the run dir, and secret-free config dumps."""

from __future__ import annotations

import re
import secrets
import string
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from arastory.io import atomic_write_text

# Names of keys that hold secrets (api_key, hf_token, access_token, client_secret, password, ...), not max_new_tokens.
SECRET_KEY = re.compile(r"(^|[_-])(api[_-]?key|secret|password|credentials?)$|(^|[_-])((auth|access|api|hf|bearer)[_-]?)?token$",
                        re.IGNORECASE)
REDACTED = "***redacted***"
WANDB_ID_FILE = "wandb_id.txt"


def redact(obj):
    """A copy of a plain config container with every secret-looking key's value replaced."""
    if isinstance(obj, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


def plain_config(cfg: DictConfig) -> dict:
    return redact(OmegaConf.to_container(cfg, resolve=True))


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run dir: created once, reused by resume and by evaluation."""
    path = Path(run_dir) / WANDB_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's id alphabet
    atomic_write_text(path, run_id + "\n")
    return run_id


def wandb_logger(run_dir: Path, run_config: dict, name: str, group: str, tags: list[str], job_type: str = "train",
                 project: str = "arastory", entity: str | None = None, mode: str = "offline"):
    """A Lightning WandbLogger bound to this run dir's W&B run; `mode=online` only when the user asks."""
    if mode not in ("offline", "online", "disabled"):
        from arastory.errors import ConfigError
        raise ConfigError("logger.wandb.mode", f"'{mode}' is not one of: offline, online, disabled")
    return _run_wide_wandb_logger()(project=project, entity=entity, name=name, id=wandb_run_id(run_dir),
                                    save_dir=str(run_dir), group=group, tags=tags, job_type=job_type, mode=mode,
                                    resume="allow", config=run_config)


def _run_wide_wandb_logger():
    from pytorch_lightning.loggers import WandbLogger

    class RunWideWandbLogger(WandbLogger):
        """Logs `trainer/global_step` as the step across the whole run: each stage's Trainer counts from 0, so the
        recipe sets `step_offset` to the steps of the stages before it and the curves continue across stages."""

        step_offset = 0

        def log_metrics(self, metrics, step=None):
            super().log_metrics(metrics, None if step is None else step + self.step_offset)

    return RunWideWandbLogger
