"""Lightning DataModule: tokenized prompt→story examples, padded batches, and a sampler that resumes mid-epoch."""

from __future__ import annotations

import dataclasses

import torch
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from arastory.records import StoryRecord
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter, FormatStats


class TokenizedStories(Dataset):
    def __init__(self, records: list[StoryRecord], formatter: ExampleFormatter):
        encoded = [(r, formatter.encode(r.prompt, r.story)) for r in records]
        self.ids = [r.id for r, e in encoded if e is not None]
        self.examples = [e for _, e in encoded if e is not None]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


class ResumableSampler(Sampler[int]):
    """A seeded permutation per epoch that can start `skip` batches in, so a resumed run sees the data a
    killed run had not yet trained on (Lightning restores the step; this restores the data position)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.skip_batches = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        start, self.skip_batches = self.skip_batches * self.batch_size, 0
        return iter(order[start:])

    def __len__(self) -> int:
        return self.n


def pad_collate(pad_token_id: int):
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
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
    return collate


class StoryDataModule(pl.LightningDataModule):
    """One training set and named validation sets (one per variety), tokenized once at construction."""

    def __init__(self, train: list[StoryRecord], val_sets: dict[str, list[StoryRecord]], formatter: ExampleFormatter,
                 batch_size: int = 4, eval_batch_size: int | None = None, seed: int = 0):
        super().__init__()
        self.formatter = formatter
        train_formatter = dataclasses.replace(formatter, stats=FormatStats())  # this stage's own counts
        self.train_set = TokenizedStories(train, train_formatter)
        self.format_stats = train_formatter.stats
        self.val_sets = {name: TokenizedStories(records, formatter) for name, records in val_sets.items()}
        self.val_names = [name for name, ds in self.val_sets.items() if len(ds)]
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.sampler = ResumableSampler(len(self.train_set), batch_size, seed)
        self.collate = pad_collate(formatter.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler, collate_fn=self.collate)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.val_sets[name], batch_size=self.eval_batch_size, collate_fn=self.collate)
                for name in self.val_names]


class ResumeDataPosition(pl.Callback):
    """On a mid-epoch resume, make the sampler skip the batches the killed run already trained on.

    Lightning restores the step and the within-epoch batch count but would replay the epoch's first batches;
    this hook runs after the restore and before the epoch's iterator is created.
    """

    def on_train_epoch_start(self, trainer, module):
        datamodule = trainer.datamodule
        completed = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        n_batches = len(datamodule.train_dataloader())
        if trainer.fit_loop.restarting and 0 < completed < n_batches:
            datamodule.sampler.skip_batches = completed
