"""Who this training process is among several (rank, world size), read from the environment and the trainer config
before torch or Lightning start: no imports beyond the standard library and omegaconf.

Processes of one data-parallel run start in one of three ways, and each says its rank differently:
  - arastory's own worker launch (`trainer=ddp`, `trainer=ddp_cpu` on one machine): the first process is rank 0
    and starts the others (`python -m arastory.train.worker <run dir>`) with `ARASTORY_RANK` set;
  - SLURM tasks (`srun`, or `hydra/launcher=submitit_slurm` with `tasks_per_node` = GPUs per node): `SLURM_PROCID`;
  - torchrun: `RANK`.
Only rank 0 writes into the run dir; the others read what it wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from arastory.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

RANK_ENV = "ARASTORY_RANK"  # set by arastory.train.distributed.WorkerLauncher for the processes it starts
WORKER_ENV = "ARASTORY_WORKER_OF"  # the run dir of the rank-0 process that started this worker


def env_rank() -> int:
    """This process's global rank as its launcher told it (0 for a process nobody else started; for the first
    process of a node started by hand with NODE_RANK=k, k: only whether it is 0 matters there)."""
    if RANK_ENV in os.environ:
        return int(os.environ[RANK_ENV])
    if "TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"])
    if slurm_tasks() > 1:
        return int(os.environ.get("SLURM_PROCID", 0))
    return node_rank()  # a node started by hand with NODE_RANK=k > 0: its first process is not rank 0


def node_rank() -> int:
    return int(os.environ.get("NODE_RANK", "0") or 0)


def slurm_tasks() -> int:
    """Tasks SLURM started for this job step (1 outside SLURM, in a one-task job, or in an interactive shell, where
    Lightning does not take SLURM's ranks either)."""
    if "SLURM_PROCID" not in os.environ or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return 1
    return int(os.environ.get("SLURM_NTASKS", "1") or 1)


def externally_launched() -> bool:
    """Whether SLURM or torchrun started several processes of this run (so each runs the entry point itself)."""
    return (
        slurm_tasks() > 1
        or node_rank() > 0
        or ("TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1)
    )


def is_rank_zero() -> bool:
    return env_rank() == 0


def devices_count(devices: int | str | Sequence[int], accelerator: str = "auto") -> int:
    """How many devices of one node a `trainer.devices` value asks for (`auto`/-1: every GPU, or one CPU process)."""
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        return len(devices)
    text = str(devices).strip()
    if text in ("auto", "-1"):
        if str(accelerator) in ("cpu",):
            return 1
        import torch  # only here: `auto` on a GPU machine means every visible GPU

        return torch.cuda.device_count() if torch.cuda.is_available() else 1
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text)


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes training together: devices per node × nodes."""
    devices = devices_count(trainer_cfg.get("devices", "auto"), str(trainer_cfg.get("accelerator", "auto")))
    return devices * int(trainer_cfg.get("num_nodes", 1) or 1)


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A GPU trainer on a machine without one stops with one line, not Lightning's traceback."""
    if str(trainer_cfg.get("accelerator", "auto")) in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "trainer.accelerator",
                f"'{trainer_cfg.accelerator}' but this machine has no CUDA GPU; "
                "use trainer=cpu (trainer=ddp_cpu for two CPU processes)",
            )


def check_batch_split(batch_size: int, world: int) -> None:
    """`batch_size` is the global batch of one optimizer step (before gradient accumulation): it must split evenly."""
    if world > 1 and batch_size % world:
        raise ConfigError(
            "batch_size",
            f"{batch_size} does not split over {world} processes (trainer.devices x "
            f"trainer.num_nodes): batch_size is the global batch; use a multiple of {world}",
        )


def wait_for_rank_zero(
    run_dir: Path, lock_file: str = ".arastory.lock", timeout_s: float = 6 * 3600, poll_s: float = 0.5
) -> None:
    """A rank > 0 waits until rank 0 of this launch has built the data and written config.yaml (after it took the
    run dir's lock), so shared caches are filled once and read by the others."""
    config, lock = Path(run_dir) / "config.yaml", Path(run_dir) / lock_file
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if config.exists() and (not lock.exists() or config.stat().st_mtime_ns >= lock.stat().st_mtime_ns):
            return
        time.sleep(poll_s)
    raise ConfigError("trainer", f"rank {env_rank()} waited {timeout_s:.0f}s for rank 0 to write {config}")


def check_launch(argv: list[str]) -> None:
    """Processes started together by SLURM or torchrun must share one run dir: a fresh dir per process (the
    default `hydra.run.dir`) would split the run. One line before Hydra starts."""
    if not externally_launched() or any(a in ("-m", "--multirun") for a in argv):
        return
    if not any(a.startswith(("hydra.run.dir=", "resume=")) for a in argv):
        from arastory.cli import fail

        fail(
            f"config error: hydra.run.dir: {max(slurm_tasks(), int(os.environ.get('WORLD_SIZE', 1)))} processes "
            "were started together and each would create a run dir of its own; pass the same hydra.run.dir=<dir> "
            "to all of them, or sweep with -m hydra/launcher=submitit_slurm (docs/scaling.md)"
        )
