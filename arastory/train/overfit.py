"""`debug=overfit_batches`: every epoch trains on the same first batches, so a working model drives their loss to ~0.

Lightning's own `overfit_batches` rebuilds the training loader around a SequentialSampler, which arastory's
resumable loader (a seeded permutation Lightning checkpoints mid-epoch) does not allow; this callback keeps that
loader and pins its permutation to epoch 0's instead, with `trainer.limit_train_batches` choosing how many batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytorch_lightning.callbacks import Callback

from arastory.train.sampler import ResumableSampler

if TYPE_CHECKING:
    import pytorch_lightning as pl


class RepeatFirstBatches(Callback):
    """At each epoch start (after Lightning set the sampler's epoch), rewind the training order to epoch 0's."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if not isinstance(sampler, ResumableSampler):
            raise TypeError(f"debug=overfit_batches needs arastory's resumable sampler, got {type(sampler).__name__}")
        sampler.epoch, sampler.consumed = 0, 0
