"""Padding-free packing: examples grouped into rows of at most `data.packing_max_tokens` tokens, each row one flat
sequence with per-example position ids and boundaries (`cu_seq_lens`), so no token of a step is padding.

Rows are formed once per stage, by first-fit over a seeded shuffle of the examples (a few rows open at a time), so
a row mixes long and short stories and is nearly full; the training order of the rows is then the usual resumable
per-epoch permutation (`ResumableSampler` over rows). Within a row the examples never see each other: attention is
split at the boundaries (`arastory.train.attention`), the first label of each example is masked (it would be
predicted from the previous example's last token), and the loss is the mean over the story tokens as unpacked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from arastory.train.formatting import IGNORE_INDEX
from arastory.train.sampler import derive_seed
from arastory.train.token_cache import EncodedExamples

OPEN_ROWS = 8  # rows still accepting examples while packing; more buys a little fill at O(n * OPEN_ROWS) cost


def pack_rows(lengths: Sequence[int], budget: int, seed: int) -> list[list[int]]:
    """Example indices per row: every row's lengths sum to at most `budget`; fixed by (lengths, budget, seed)."""
    if lengths and max(lengths) > budget:
        raise ValueError(f"an example of {max(lengths)} tokens does not fit a packed row of {budget}")
    generator = torch.Generator().manual_seed(derive_seed(seed, "pack"))
    order = torch.randperm(len(lengths), generator=generator).tolist()
    smallest = min(lengths, default=0)
    rows: list[list[int]] = []
    room: list[int] = []
    open_rows: list[int] = []
    for index in order:
        size = lengths[index]
        target = next((r for r in open_rows if room[r] >= size), None)
        if target is None:
            if len(open_rows) == OPEN_ROWS:
                open_rows.remove(min(open_rows, key=room.__getitem__))  # close the fullest
            rows.append([])
            room.append(budget)
            open_rows.append(target := len(rows) - 1)
        rows[target].append(index)
        room[target] -= size
        if room[target] < smallest:
            open_rows.remove(target)
    return rows


class PackedRows(Dataset):
    """Item k: the examples of packed row k (a list of example dicts, each with its `id`)."""

    def __init__(self, examples: EncodedExamples, budget: int, seed: int):
        self.examples, self.budget = examples, budget
        self.rows = pack_rows([examples.length(i) for i in range(len(examples))], budget, seed)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> list[dict]:
        return [self.examples[i] for i in self.rows[index]]

    def fill(self) -> float:
        """Tokens in the rows over their budget (how full the rows are; padding is zero either way)."""
        tokens = sum(self.examples.length(i) for row in self.rows for i in row)
        return tokens / (len(self.rows) * self.budget) if self.rows else 0.0


def packed_collate(with_ids: bool = True) -> Callable[[list[list[dict]]], dict]:
    """One packed row (the loader's batch size is 1 row) → a [1, tokens] batch: input_ids, labels (the first label
    of each example masked), position_ids restarting at 0 per example, flash-attention's `cu_seq_lens_q/k` and
    `max_length_q/k`, the scored positions and their targets for `story_nll`, and token counts."""

    def collate(batch: list[list[dict]]) -> dict:
        (row,) = batch
        ids = [np.asarray(example["input_ids"], dtype=np.int64) for example in row]
        labels = [np.asarray(example["labels"], dtype=np.int64).copy() for example in row]
        for label in labels:
            label[0] = IGNORE_INDEX
        lengths = np.array([len(x) for x in ids])
        cu = np.concatenate([[0], np.cumsum(lengths)])
        positions = np.arange(cu[-1]) - np.repeat(cu[:-1], lengths)
        label_row = torch.from_numpy(np.concatenate(labels))[None]
        out = {
            "input_ids": torch.from_numpy(np.concatenate(ids))[None],
            "labels": label_row,
            "position_ids": torch.from_numpy(positions)[None],
            "cu_seq_lens_q": torch.from_numpy(cu).to(torch.int32),
            "max_length_q": int(lengths.max()),
        }
        out["cu_seq_lens_k"], out["max_length_k"] = out["cu_seq_lens_q"], out["max_length_q"]
        out.update(training_extras(label_row, int(cu[-1]), int(cu[-1]), len(row)))
        for key in ("story_chars", "story_words"):
            if all(key in example for example in row):
                out[key] = torch.tensor([example[key] for example in row], dtype=torch.long)
        if with_ids:
            out["example_ids"] = [example["id"] for example in row]
        return out

    return collate


def training_extras(labels: torch.Tensor, tokens: int, slots: int, examples: int) -> dict:
    """What a training step needs besides the model inputs, computed on the CPU while the accelerator works:
    the scored positions and targets (`story_nll`), the examples in the batch and its real and padded token counts."""
    from arastory.train.loss import scored_positions

    positions, targets = scored_positions(labels)
    return {
        "logit_positions": positions,
        "targets": targets,
        "num_tokens": tokens,
        "num_slots": slots,
        "num_examples": examples,
    }
