"""Experiment tracking: W&B (offline unless asked) with its run id kept in the run dir, and secret-free config dumps."""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from arastory.redact import REDACTED, SECRET_KEY, redact  # noqa: F401  (re-exported: tests and callers import them here)

if TYPE_CHECKING:
    from pytorch_lightning.loggers import WandbLogger

WANDB_ID_FILE = "wandb_id.txt"


def plain_config(cfg: DictConfig) -> dict:
    return redact(OmegaConf.to_container(cfg, resolve=True))


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run dir: created once, reused by resume and by evaluation.

    The file appears whole and only once (written aside, then hard-linked into place, which fails if it exists),
    so two processes can never log one run dir under two ids.
    """
    import tempfile

    path = Path(run_dir) / WANDB_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # W&B's id alphabet
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".{WANDB_ID_FILE}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(run_id + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        os.unlink(tmp)
    return run_id


def wandb_logger(
    run_dir: Path,
    run_config: dict,
    name: str,
    group: str,
    tags: list[str],
    job_type: str = "train",
    project: str = "arastory",
    entity: str | None = None,
    mode: str = "offline",
) -> WandbLogger:
    """A Lightning WandbLogger bound to this run dir's W&B run; `mode=online` only when the user asks."""
    if mode not in ("offline", "online", "disabled"):
        from arastory.errors import ConfigError

        raise ConfigError("logger.wandb.mode", f"'{mode}' is not one of: offline, online, disabled")
    return _run_wide_wandb_logger()(
        project=project,
        entity=entity,
        name=name,
        id=wandb_run_id(run_dir),
        save_dir=str(run_dir),
        group=group,
        tags=tags,
        job_type=job_type,
        mode=mode,
        resume="allow",
        config=run_config,
    )


def _run_wide_wandb_logger() -> type[WandbLogger]:
    from pytorch_lightning.loggers import WandbLogger

    class RunWideWandbLogger(WandbLogger):
        """Logs `trainer/global_step` as the step across the whole run: each stage's Trainer counts from 0, so the
        recipe sets `step_offset` to the steps of the stages before it and the curves continue across stages."""

        step_offset = 0

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            super().log_metrics(metrics, None if step is None else step + self.step_offset)

    return RunWideWandbLogger
