"""Lightning DataModule: tokenized prompt→story examples (cached across runs), padded or packed batches, and a training
order that resumes mid-epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from arastory.io import fingerprint
from arastory.records import StoryRecord
from arastory.train.distributed import (
    EveryNth,
    Flagged,
    LockstepBatches,
    ShardedBatches,
    ShardedLoader,
    check_val_shards,
    flagged_collate,
    shard_of,
)
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter, FormatStats
from arastory.train.packing import PackedRows, packed_collate, training_extras
from arastory.train.sampler import LengthGroupedSampler, ResumableLoader, ResumableSampler
from arastory.train.token_cache import cached_examples

COUNT_KEYS = ("story_chars", "story_words")  # per-example counts batched as tensors when the examples carry them
TOKENIZED = ("train_set", "format_stats", "val_sets", "val_format_stats", "val_names", "packed", "sampler")


def pad_collate(pad_token_id: int, with_ids: bool = False, extras: bool = False) -> Callable[[list[dict]], dict]:
    """Right-padded input_ids, labels (-100 on padding) and attention_mask; the examples' character and word counts
    when they have them; with `with_ids`, the example ids as a list under `example_ids`; with `extras`, what
    `story_nll` and the step's bookkeeping need (`packing.training_extras`)."""

    def collate(batch: list[dict]) -> dict:
        width = max(len(example["input_ids"]) for example in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, example in enumerate(batch):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention[row, :n] = 1
        out: dict[str, Any] = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        for key in COUNT_KEYS:
            if all(key in example for example in batch):
                out[key] = torch.tensor([example[key] for example in batch], dtype=torch.long)
        if with_ids:
            out["example_ids"] = [example["id"] for example in batch]
        if extras:
            out.update(training_extras(labels, int(attention.sum()), attention.numel(), len(batch)))
        return out

    return collate


class StoryDataModule(pl.LightningDataModule):
    """One training set and named validation sets (one per variety), tokenized once in `setup()` (and cached under
    `token_cache`, memory-mapped from there); constructing it reads nothing.

    The training order is a seeded permutation per epoch (`ResumableSampler`), checkpointed by Lightning through
    the training loader's `state_dict`, so a resumed stage continues with the very batches the killed run had next.
    With `packing`, a batch is one packed row of at most `packing_max_tokens` tokens (default: max_length *
    batch_size) and the permutation is over rows; with `group_by_length` (unpacked), batches hold similar lengths.
    """

    def __init__(
        self,
        train: list[StoryRecord],
        val_sets: dict[str, list[StoryRecord]],
        formatter: ExampleFormatter,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        seed: int = 0,
        packing: bool = False,
        packing_max_tokens: int | None = None,
        group_by_length: bool = False,
        token_cache: Path | None = None,
    ):
        super().__init__()
        self.formatter, self.token_cache = formatter, token_cache
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self._settings: dict[str, Any] = {
            "packing": packing,
            "max_tokens": packing_max_tokens,
            "seed": seed,
            "grouped": group_by_length,
        }
        self._records: tuple | None = (train, val_sets)  # dropped once tokenized: the examples are what training reads
        self.collate = pad_collate(formatter.tokenizer.pad_token_id, extras=True)

    def setup(self, stage: str | None = None) -> None:
        """Tokenize (through the token cache) once, on the first call: Lightning calls it on every rank before its
        loaders; the recipe calls it earlier where it plans steps, so a second call is free."""
        if self._records is None:
            return
        train, val_sets = self._records
        train_formatter = dataclasses.replace(self.formatter, stats=FormatStats())  # this stage's own counts
        self.train_set = cached_examples(train, train_formatter, self.token_cache)
        self.format_stats = train_formatter.stats
        val_formatter = dataclasses.replace(self.formatter, stats=FormatStats())
        self.val_sets = {
            name: cached_examples(records, val_formatter, self.token_cache) for name, records in val_sets.items()
        }
        self.val_format_stats = val_formatter.stats
        self.val_names = [name for name, ds in self.val_sets.items() if len(ds)]
        settings = self._settings
        self.packed = self._pack(settings["packing"], settings["max_tokens"], settings["seed"])
        self.sampler = self._sampler(settings["seed"], settings["grouped"])
        self._records = None

    def __getattr__(self, name: str):
        # The examples and what is derived from them exist after setup(); reading one first runs it.
        if name in TOKENIZED and self.__dict__.get("_records") is not None:
            self.setup()
            return getattr(self, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def _pack(self, packing: bool, max_tokens: int | None, seed: int) -> PackedRows | None:
        if not packing:
            return None
        budget = max_tokens or self.formatter.resolved_max_length * self.batch_size
        return PackedRows(self.train_set, budget, seed)

    def _sampler(self, seed: int, group_by_length: bool) -> ResumableSampler:
        ids = fingerprint(self.train_set.ids)
        if self.packed is not None:
            return ResumableSampler(len(self.packed), seed, data_id=fingerprint(ids, "packed", self.packed.budget))
        if group_by_length:
            lengths = [self.train_set.length(i) for i in range(len(self.train_set))]
            return LengthGroupedSampler(
                lengths, self.batch_size, seed, data_id=fingerprint(ids, "grouped", self.batch_size)
            )
        return ResumableSampler(len(self.train_set), seed, data_id=ids)

    def tokens_per_step(self) -> int:
        """The most tokens one training batch can hold (a packed row's budget, or batch_size padded examples)."""
        if self.packed is not None:
            return self.packed.budget
        longest = max((self.train_set.length(i) for i in range(len(self.train_set))), default=0)
        return self.batch_size * longest

    def batches_per_epoch(self) -> int:
        return len(self.packed) if self.packed is not None else -(-len(self.train_set) // self.batch_size)

    def train_dataloader(self) -> DataLoader:
        if shard := shard_of(self.trainer):  # several processes: this rank's part of each global batch
            if self.packed is not None:
                from arastory.errors import ConfigError

                raise ConfigError(
                    "data.packing",
                    "packed rows are not split over several processes (trainer=ddp); set data.packing=false",
                )
            return ShardedLoader(
                self.train_set,
                ShardedBatches(self.sampler, self.batch_size, *shard),
                collate_fn=pad_collate(self.formatter.tokenizer.pad_token_id, with_ids=True, extras=True),
            )
        if self.packed is not None:
            return ResumableLoader(self.packed, self.sampler, batch_size=1, collate_fn=packed_collate(with_ids=True))
        return ResumableLoader(
            self.train_set,
            self.sampler,
            batch_size=self.batch_size,
            collate_fn=pad_collate(self.formatter.tokenizer.pad_token_id, with_ids=True, extras=True),
        )

    def val_dataloader(self) -> list[DataLoader]:
        # Their own generators: iterating a loader would otherwise draw on the global RNG that dropout uses.
        shard = shard_of(self.trainer)  # several processes: every example on one rank, sums reduced after
        if shard:
            check_val_shards({name: self.val_sets[name] for name in self.val_names}, shard[1])
        if (
            shard and self.trainer is not None and getattr(self.trainer.strategy, "lockstep_validation", False)
        ):  # FSDP: as many batches per rank
            return [self._lockstep_loader(self.val_sets[name], *shard) for name in self.val_names]
        return [
            DataLoader(
                self.val_sets[name],
                batch_size=self.eval_batch_size // (shard[1] if shard else 1) or 1,
                collate_fn=self.collate,
                generator=torch.Generator().manual_seed(0),
                sampler=EveryNth(len(self.val_sets[name]), *shard) if shard else None,
            )
            for name in self.val_names
        ]

    def _lockstep_loader(self, dataset, rank: int, world: int) -> DataLoader:
        """One validation set's loader for one rank, padded to as many batches as every other rank's (FSDP)."""
        return DataLoader(
            Flagged(dataset),
            batch_sampler=LockstepBatches(len(dataset), self.eval_batch_size // world or 1, rank, world),
            collate_fn=flagged_collate(self.collate),
            generator=torch.Generator().manual_seed(0),
        )
