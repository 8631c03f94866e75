"""Data-parallel training on several processes through Lightning's DDP: the strategy and how its worker processes
start, each rank's shard of the training order and of the validation sets, the token-weighted loss, metric
reduction, and the per-rank RNG streams that keep resume exact.

`batch_size` is the global batch: with N processes each takes batch_size / N examples of the very batch a single
process would train on, and each rank's loss is weighted by its share of the batch's tokens, so N processes take
the optimizer steps one process would (up to float summation order and dropout masks).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.launcher import _Launcher
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from torch.utils.data import DataLoader, Sampler

from arastory.train.devices import teardown_resident
from arastory.train.ranks import RANK_ENV, WORKER_ENV, world_size
from arastory.train.sampler import ResumableSampler, derive_seed

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import pytorch_lightning as pl
    from omegaconf import DictConfig
    from pytorch_lightning.strategies import Strategy

LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Validation metrics are logged after torchmetrics sums them over the ranks: Lightning's advice to sync is moot.
warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level")


# ------------------------------------------------------------------------------------------------ strategy, launch
class WorkerLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher, but the other ranks run `python -m arastory.train.worker <run dir>`, which trains the
    run dir's saved config.yaml, instead of re-running `sys.argv`: in a Hydra sweep or a submitit job sys.argv is
    the sweep or submitit's own entry point, and a re-run would create and lock run dirs of its own."""

    def __init__(self, cluster_environment, num_processes: int, num_nodes: int, run_dir: Path):
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.run_dir = Path(run_dir).resolve()

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.saved_env = {key: os.environ.get(key) for key in LAUNCH_ENV}
        env = self.cluster_environment
        os.environ.update(
            MASTER_ADDR=env.main_address,
            MASTER_PORT=str(env.main_port),
            NODE_RANK=str(env.node_rank()),
            LOCAL_RANK=str(env.local_rank()),
            WORLD_SIZE=str(self.num_processes * self.num_nodes),
        )
        for local_rank in range(1, self.num_processes):
            child_env = {
                **os.environ,
                "LOCAL_RANK": str(local_rank),
                WORKER_ENV: str(self.run_dir),
                RANK_ENV: str(env.node_rank() * self.num_processes + local_rank),
            }
            command = [sys.executable, "-m", "arastory.train.worker", str(self.run_dir)]
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=os.getcwd()))
        ACTIVE_LAUNCHES.append(self)

    def finish(self) -> None:
        """Wait for the workers (a failed one fails the run) and undo what the launch set, so a sweep's next job in
        this process starts its own workers."""
        codes = [proc.wait() for proc in self.procs]
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if any(codes):
            from arastory.errors import ArastoryError

            raise ArastoryError(f"training error: worker processes exited with {codes} (their messages are above)")


ACTIVE_LAUNCHES: list[WorkerLauncher] = []


def finish_launches(failed: bool = False) -> None:
    """Called by rank 0 at the end of a run (see WorkerLauncher.finish); when rank 0 failed, its workers (which
    would wait for it in a collective forever) are killed first."""
    while ACTIVE_LAUNCHES:
        launcher = ACTIVE_LAUNCHES.pop()
        if failed:
            launcher.kill(signal.SIGKILL)
        try:
            launcher.finish()
        except Exception:
            if not failed:
                raise


class LaunchesWorkers:
    """A Lightning strategy mixin: the other ranks start as arastory workers of `self.run_dir` (`WorkerLauncher`)."""

    run_dir: Path
    _launcher: _Launcher | None

    def _configure_launcher(self) -> None:
        strategy: Any = self  # a Lightning ParallelStrategy: its cluster environment and process counts
        self._launcher = WorkerLauncher(
            strategy.cluster_environment, strategy.num_processes, strategy.num_nodes, self.run_dir
        )


class ResidentDDP(LaunchesWorkers, DDPStrategy):
    """Lightning's DDP without the move of the model to the CPU at teardown (as `ResidentSingleDevice`), with
    arastory's worker launch and no buffer broadcast at every forward (the frozen base's buffers never change, and
    ranks may run different numbers of validation batches)."""

    strategy_name = "resident_ddp"

    def __init__(self, run_dir: str | Path, **kwargs):
        kwargs.setdefault("broadcast_buffers", False)
        super().__init__(**kwargs)
        self.run_dir = Path(run_dir)

    def teardown(self) -> None:
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            self.model = self.lightning_module  # unwrap; the module stays on its device
        teardown_resident(self)


def parallel_strategy(trainer_cfg: DictConfig, run_dir: str | Path) -> Strategy | None:
    """`Trainer(strategy=...)` for a multi-process config (`strategy: ddp`, or several devices), else None."""
    named = trainer_cfg.get("strategy", "auto")
    if named == "ddp" or (named == "auto" and world_size(trainer_cfg) > 1):
        return ResidentDDP(run_dir)
    if str(named).startswith("fsdp"):
        from arastory.train.sharded import ShardedLoRA

        return ShardedLoRA(run_dir, cpu_offload=named == "fsdp_cpu_offload")
    return None


def training_strategy(trainer_cfg: DictConfig, run_dir: str | Path) -> Strategy | str:
    from arastory.train.devices import training_strategy as single_or_named

    return parallel_strategy(trainer_cfg, run_dir) or single_or_named(trainer_cfg)


def bind_cuda_device(trainer_cfg: DictConfig) -> None:
    """Each GPU process loads its (4-bit) base straight onto its own GPU: `load_model` puts it on the current device."""
    if not torch.cuda.is_available() or str(trainer_cfg.get("accelerator", "auto")) == "cpu":
        return
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))
    devices = trainer_cfg.get("devices", "auto")
    ids = list(devices) if not isinstance(devices, (int, str)) else None
    torch.cuda.set_device(int(ids[local]) if ids else local)


# ------------------------------------------------------------------------------------------------------ data shards
def shard_of(trainer: pl.Trainer | None) -> tuple[int, int] | None:
    """(rank, world size) while several processes train, else None."""
    if trainer is None or trainer.world_size <= 1:
        return None
    return trainer.global_rank, trainer.world_size


def split_batch(batch: list[int], world: int, order: list[int]) -> list[list[int]]:
    """One part of a global batch per rank, in order, sizes differing by at most one. A last batch smaller than the
    world is topped up with the epoch's first examples (as torch's DistributedSampler pads), so every rank steps."""
    if len(batch) < world:
        batch = batch + order[: world - len(batch)]
    base, extra = divmod(len(batch), world)
    bounds = [r * base + min(r, extra) for r in range(world + 1)]
    return [batch[bounds[r] : bounds[r + 1]] for r in range(world)]


class ShardedBatches(Sampler[list[int]]):
    """This rank's part of each global batch of the epoch's remaining order (`ResumableSampler`): the global batch
    of step s is what one process would train on at step s."""

    def __init__(self, sampler: ResumableSampler, global_batch: int, rank: int, world: int):
        self.sampler, self.global_batch, self.rank, self.world = sampler, global_batch, rank, world

    def plan(self) -> list[tuple[list[int], list[int]]]:
        """(global batch, this rank's part) for each step left in the epoch."""
        order = self.sampler.epoch_order()
        remaining = order[self.sampler.consumed :]
        steps = []
        for start in range(0, len(remaining), self.global_batch):
            batch = remaining[start : start + self.global_batch]
            steps.append((batch, split_batch(batch, self.world, order)[self.rank]))
        return steps

    def __iter__(self):
        return iter([part for _, part in self.plan()])

    def __len__(self) -> int:
        return -(-self.sampler.n // self.global_batch)  # the full epoch's steps; Lightning counts the restored ones


class ShardedLoader(DataLoader):
    """`ResumableLoader` for one rank: yields its part of each global batch with the global batch's ids
    (`global_example_ids`, for batches.jsonl) and counts the whole global batch as consumed."""

    def __init__(self, dataset, batches: ShardedBatches, **kwargs):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, batch_sampler=batches, **kwargs)
        self.batches = batches

    @property
    def resumable(self) -> ResumableSampler:
        return self.batches.sampler

    def __iter__(self):
        self.generator.manual_seed(derive_seed(self.resumable.seed, "workers", self.resumable.epoch))
        plan = self.batches.plan()
        for (global_batch, _), batch in zip(plan, super().__iter__(), strict=False):
            self.resumable.consumed += len(global_batch)
            ids = self.dataset.ids  # type: ignore[attr-defined]  # EncodedExamples, as built by the data module
            batch["global_example_ids"] = [ids[i] for i in global_batch]
            yield batch

    def state_dict(self) -> dict:
        return self.resumable.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.resumable.load_state_dict(state)


class EveryNth(Sampler[int]):
    """Indices rank, rank + world, ...: each validation example on exactly one rank (sums are reduced after)."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class LockstepBatches(Sampler[list[tuple[int, bool]]]):
    """This rank's validation batches (`EveryNth`'s examples, `batch_size` at a time), padded with batches flagged as
    padding until every rank has as many as the rank with most: under FSDP each forward is a collective, so all ranks
    must run the same number. Yields (index, is_padding) pairs for `Flagged` and `flagged_collate`."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int):
        mine = EveryNth(n, rank, world).indices
        self.batches = [[(i, False) for i in mine[s : s + batch_size]] for s in range(0, len(mine), batch_size)]
        most = math.ceil(math.ceil(n / world) / batch_size)  # the first rank's count: it has the most examples
        self.batches += [[(0, True)]] * (most - len(self.batches))

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Flagged(torch.utils.data.Dataset):
    """A dataset read with `LockstepBatches`' (index, is_padding) keys: the example and its flag."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]):
        index, padding = key
        return self.dataset[index], padding


def flagged_collate(collate: Callable[[list[dict]], dict]) -> Callable[[list], dict]:
    """`collate` of the examples, with `lockstep_padding` set on a padding batch (the strategy skips its sums)."""

    def wrapped(items: list) -> dict:
        batch = collate([example for example, _ in items])
        batch["lockstep_padding"] = any(padding for _, padding in items)
        return batch

    return wrapped


def check_val_shards(val_sets: dict, world: int) -> None:
    """Every rank needs at least one validation example, or it would skip the validation the others reduce with."""
    total = sum(len(ds) for ds in val_sets.values())
    if total and total < world:
        from arastory.errors import ConfigError

        raise ConfigError(
            "data.val_fraction",
            f"{total} validation examples for {world} processes; each process "
            "needs at least one (raise data.val_fraction or use fewer processes)",
        )


# ------------------------------------------------------------------------------------------------ loss, reductions
@dataclass
class StepTotals:
    """One optimizer step's global numbers: mean loss over the global batch's scored tokens, input tokens, examples."""

    loss: float
    input_tokens: int
    examples: int


def global_step_loss(trainer: pl.Trainer, loss: torch.Tensor, batch: dict) -> tuple[torch.Tensor, StepTotals | None]:
    """The loss to backpropagate and the step's global totals. With N ranks each rank's mean over its own scored
    tokens is rescaled to (its tokens / all ranks' tokens) x N, so DDP's average of the ranks' gradients is the
    gradient of the mean over the whole global batch's tokens, as with one process. One process: (loss, None)."""
    if shard_of(trainer) is None:
        return loss, None
    scored = (batch["labels"][:, 1:] != -100).sum()
    local = torch.stack(
        [
            loss.detach().double() * scored,
            scored.double(),
            batch["attention_mask"].sum().double(),
            torch.tensor(float(batch["input_ids"].size(0)), dtype=torch.float64, device=loss.device),
        ]
    )
    total = trainer.strategy.reduce(local.clone(), reduce_op="sum")
    weighted = loss * (scored.to(loss.dtype) * trainer.world_size / total[1].clamp(min=1).to(loss.dtype))
    return weighted, StepTotals(float(total[0] / total[1].clamp(min=1)), int(total[2]), int(total[3]))


def gather_rng(trainer: pl.Trainer, mine: dict) -> list[dict] | None:
    """Every rank's RNG streams (rank order), for a checkpoint that resumes each rank exactly; None with one rank."""
    if shard_of(trainer) is None or not torch.distributed.is_initialized():
        return None
    streams: list = [None] * trainer.world_size
    torch.distributed.all_gather_object(streams, mine)
    return streams


def own_rng(trainer: pl.Trainer | None, state: dict) -> dict:
    """This rank's RNG streams from a checkpoint (rank 0's when it was written by another number of processes)."""
    by_rank = state.get("rng_by_rank")
    if by_rank and trainer is not None and len(by_rank) == trainer.world_size:
        return by_rank[trainer.global_rank]
    return state["rng"]


# ------------------------------------------------------------------------------------------------------- run facts
def scratch_dir(zero: bool, run_dir: Path) -> AbstractContextManager[Path | str]:
    """Where this rank writes the data stage's by-products (the filter's outputs): the run dir on rank 0, a
    temporary dir elsewhere (the filter's caches are shared and already filled by rank 0)."""
    import contextlib
    import tempfile

    if zero:
        return contextlib.nullcontext(run_dir)
    return tempfile.TemporaryDirectory(prefix="arastory-rank-")


def run_shape(cfg: DictConfig) -> dict:
    """How the run was spread over processes (metrics.json): the numbers that make its batches comparable."""
    world = world_size(cfg.trainer)
    return {
        "world_size": world,
        "global_batch_size": int(cfg.batch_size),
        "per_device_batch_size": int(cfg.batch_size) // world,
        "accumulate_grad_batches": int(cfg.trainer.get("accumulate_grad_batches", 1) or 1),
    }
