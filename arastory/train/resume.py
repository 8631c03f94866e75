"""Exact resume: RNG streams in every checkpoint, checkpoints written atomically, and strict matching of a
checkpoint against the run that loads it (adapter keys and shapes, base model, adapter config, training data)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from arastory.errors import ArastoryError

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from peft import LoraConfig, PeftModel
    from pytorch_lightning.utilities.types import STEP_OUTPUT

IDENTITY_KEY = "arastory_identity"  # in each checkpoint: what it was trained with (see run_identity)


class CheckpointMismatch(ArastoryError):
    """A checkpoint or saved adapter does not belong to the run loading it; the message names it and what differs."""

    def __init__(self, what: str, where: str | Path | None = None):
        super().__init__(f"checkpoint error: {where}: {what}" if where else f"checkpoint error: {what}")
        self.what = what


# ------------------------------------------------------------------------------------------------------ RNG streams
def rng_states() -> dict:
    """Python, NumPy, torch CPU and every CUDA device's RNG state (tensors and plain values only, so checkpoints
    still load with torch.load(weights_only=True), Lightning's default)."""
    state = np.random.get_state()
    assert isinstance(state, tuple)  # legacy=True, the default: the MT19937 tuple
    kind, keys, pos, has_gauss, gauss = state
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RngStreams(Callback):
    """Saves the RNG streams with each checkpoint and puts them back when the resumed fit starts training.

    They are restored in `on_train_start` (after the model, optimizer and data position are restored, before the
    first batch), so nothing Lightning does while restoring can shift the dropout masks of the resumed steps.
    """

    def __init__(self):
        self._pending: dict | None = None
        self._trainer: pl.Trainer | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        from arastory.train.distributed import gather_rng

        mine = rng_states()
        # several processes: every rank's streams (all ranks call this); None before `setup` saw the trainer
        by_rank = gather_rng(self._trainer, mine) if self._trainer is not None else None
        return {"rng": mine, **({"rng_by_rank": by_rank} if by_rank else {})}

    def load_state_dict(self, state_dict: dict) -> None:
        from arastory.train.distributed import own_rng

        self._pending = own_rng(self._trainer, state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None


# ------------------------------------------------------------------------------------------------- checkpoints
class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every `every_n_steps` optimizer steps. A save that falls on an epoch's last batch waits until
    that epoch's validation has run: Lightning never reruns the validation of an epoch whose last batch was
    checkpointed, so a run killed during it would lose that validation from its history."""

    def __init__(self, dirpath, every_n_steps: int):
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_steps,
            save_on_train_epoch_end=False,
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: STEP_OUTPUT, batch: dict, batch_idx: int
    ) -> None:
        if trainer.global_step % self._every_n_train_steps == 0 and validation_follows(trainer):
            self._defer_save_until_validation = True  # Lightning's own deferral: saved in on_validation_end
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def validation_follows(trainer: pl.Trainer) -> bool:
    """Whether the batch that just ended is its epoch's last and a validation run comes right after it."""
    if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or not trainer.enable_validation:
        return False
    batches = trainer.num_val_batches
    every = trainer.check_val_every_n_epoch
    return sum(batches) > 0 and (every is None or (trainer.current_epoch + 1) % every == 0)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file and renames it, so a kill mid-save leaves the previous one intact."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------- strict matching
def run_identity(model: PeftModel, peft_config: LoraConfig) -> dict:
    """What a checkpoint must agree on with the run loading it: the base model's shape and the adapter's config."""
    config = model.get_base_model().config
    base = {key: getattr(config, key, None) for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers")}
    adapter = {
        "r": peft_config.r,
        "lora_alpha": peft_config.lora_alpha,
        "lora_dropout": peft_config.lora_dropout,
        "bias": peft_config.bias,
        "target_modules": sorted(peft_config.target_modules or []),
        "modules_to_save": sorted(peft_config.modules_to_save or []),
    }
    return {"base_model": base, "peft": adapter}


def identity_mismatch(saved: dict, current: dict) -> str | None:
    """'peft.r: 16 in the checkpoint, 8 in this run; ...' or None when they agree."""
    diffs = [
        f"{group}.{key}: {saved.get(group, {}).get(key)!r} in the checkpoint, {value!r} in this run"
        for group, values in current.items()
        for key, value in values.items()
        if saved.get(group, {}).get(key) != value
    ]
    return "; ".join(diffs) or None


def shapes_mismatch(expected: dict[str, tuple], found: dict[str, tuple], limit: int = 3) -> str | None:
    """Which adapter tensors are missing, unexpected or of another shape (the first few of each), or None."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [
        f"{k} {tuple(found[k])} vs {tuple(expected[k])}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k]) != tuple(expected[k])
    ]
    parts = []
    for label, items in (
        ("missing adapter tensors", missing),
        ("unexpected tensors", unexpected),
        ("shape differs (checkpoint vs this run)", reshaped),
    ):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or None


def check_checkpoint(checkpoint: dict, identity: dict, trainable: dict[str, tuple], where: str | Path) -> None:
    """Stop before training when a Lightning checkpoint was written by a different model, adapter or adapter layout."""
    saved = checkpoint.get(IDENTITY_KEY)
    if saved is None:
        raise CheckpointMismatch("written without a run identity (an older arastory?); start a new run", where)
    problem = identity_mismatch(saved, identity) or shapes_mismatch(
        trainable, {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()}
    )
    if problem:
        raise CheckpointMismatch(problem, where)


def load_adapter_strict(model: PeftModel, adapter_dir: Path, identity: dict) -> None:
    """Load a saved adapter (save_pretrained's folder) into the peft model; refuse one of another config or layout."""
    import json

    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    saved_peft = {
        key: sorted(config.get(key) or []) if key in ("target_modules", "modules_to_save") else config.get(key)
        for key in identity["peft"]
    }
    saved = load_file(adapter_dir / "adapter_model.safetensors")
    expected = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}
    problem = identity_mismatch({"peft": saved_peft}, {"peft": identity["peft"]}) or shapes_mismatch(
        expected, {k: tuple(v.shape) for k, v in saved.items()}
    )
    if problem:
        raise CheckpointMismatch(problem.replace("in the checkpoint", "in the saved adapter"), adapter_dir)
    set_peft_model_state_dict(model, saved)
