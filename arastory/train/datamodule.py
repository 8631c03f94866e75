"""Lightning DataModule: tokenized prompt→story examples, padded batches, and a training order that resumes mid-epoch."""

from __future__ import annotations

import dataclasses

import torch
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from arastory.io import fingerprint
from arastory.records import StoryRecord
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter, FormatStats
from arastory.train.distributed import EveryNth, ShardedBatches, ShardedLoader, check_val_shards, shard_of
from arastory.train.sampler import ResumableLoader, ResumableSampler

COUNT_KEYS = ("story_chars", "story_words")   # per-example counts batched as tensors when the examples carry them


class TokenizedStories(Dataset):
    def __init__(self, records: list[StoryRecord], formatter: ExampleFormatter):
        encoded = [(r, formatter.encode(r.prompt, r.story)) for r in records]
        self.ids = [r.id for r, e in encoded if e is not None]
        self.examples = [e for _, e in encoded if e is not None]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return {**self.examples[index], "id": self.ids[index]}


def pad_collate(pad_token_id: int, with_ids: bool = False):
    """Right-padded input_ids, labels (-100 on padding) and attention_mask; the examples' character and word counts
    when they have them; with `with_ids`, the example ids as a list under `example_ids`."""

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
        out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
        for key in COUNT_KEYS:
            if all(key in example for example in batch):
                out[key] = torch.tensor([example[key] for example in batch], dtype=torch.long)
        if with_ids:
            out["example_ids"] = [example["id"] for example in batch]
        return out
    return collate


class StoryDataModule(pl.LightningDataModule):
    """One training set and named validation sets (one per variety), tokenized once at construction.

    The training order is a seeded permutation per epoch (`ResumableSampler`), checkpointed by Lightning through
    the training loader's `state_dict`, so a resumed stage continues with the very batches the killed run had next.
    """

    def __init__(self, train: list[StoryRecord], val_sets: dict[str, list[StoryRecord]], formatter: ExampleFormatter,
                 batch_size: int = 4, eval_batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.formatter = formatter
        train_formatter = dataclasses.replace(formatter, stats=FormatStats())  # this stage's own counts
        self.train_set = TokenizedStories(train, train_formatter)
        self.format_stats = train_formatter.stats
        val_formatter = dataclasses.replace(formatter, stats=FormatStats())
        self.val_sets = {name: TokenizedStories(records, val_formatter) for name, records in val_sets.items()}
        self.val_format_stats = val_formatter.stats
        self.val_names = [name for name, ds in self.val_sets.items() if len(ds)]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.sampler = ResumableSampler(len(self.train_set), seed, data_id=fingerprint(self.train_set.ids))
        self.collate = pad_collate(formatter.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        collate = pad_collate(self.formatter.tokenizer.pad_token_id, with_ids=True)
        if shard := shard_of(self.trainer):  # several processes: this rank's part of each global batch
            return ShardedLoader(self.train_set, ShardedBatches(self.sampler, self.batch_size, *shard), collate_fn=collate)
        return ResumableLoader(self.train_set, self.sampler, batch_size=self.batch_size, collate_fn=collate)

    def val_dataloader(self) -> list[DataLoader]:
        # Their own generators: iterating a loader would otherwise draw on the global RNG that dropout uses.
        shard = shard_of(self.trainer)  # several processes: every example on one rank, sums reduced after
        if shard:
            check_val_shards({name: self.val_sets[name] for name in self.val_names}, shard[1])
        return [DataLoader(self.val_sets[name], batch_size=self.eval_batch_size // (shard[1] if shard else 1) or 1,
                           collate_fn=self.collate, generator=torch.Generator().manual_seed(0),
                           sampler=EveryNth(len(self.val_sets[name]), *shard) if shard else None)
                for name in self.val_names]
