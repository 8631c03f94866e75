"""The order of training examples: a seeded permutation per epoch that Lightning checkpoints and restores mid-epoch.

Lightning saves `state_dict()` of every training loader that has one into the checkpoint and loads it back before
the first batch of a resumed fit (`FitLoop.on_save_checkpoint` / `_load_combined_loader_states`). `ResumableLoader`
is such a loader: its state is where its `ResumableSampler` stands in the epoch, counted from the batches it has
handed to the training loop (never from what the sampler or a worker prefetched).
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import DataLoader, Sampler

from arastory.train.resume import CheckpointMismatch


def derive_seed(*parts: object) -> int:
    """A 60-bit seed from a base seed and labels, so streams of different stages, epochs and seeds never coincide."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


class ResumableSampler(Sampler[int]):
    """Epoch `e` visits `range(n)` in a permutation seeded by (seed, e), minus the `consumed` examples a restored
    run already trained on in that epoch.

    `consumed` counts examples of the epoch (not batches of one rank), so a data-parallel version only has to
    shard the remaining order. `data_id` names the training set (a hash of its example ids): a checkpoint from
    another training set is refused instead of being replayed in a silently different order.
    """

    def __init__(self, n: int, seed: int, data_id: str = ""):
        self.n, self.seed, self.data_id = n, seed, data_id
        self.epoch, self.consumed = 0, 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before each epoch, and with the same epoch again when it restarts mid-epoch."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def epoch_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self):
        return iter(self.epoch_order()[self.consumed :])

    def __len__(self) -> int:
        return self.n  # the full epoch: Lightning counts the batches a restored run already did itself

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "n": self.n, "data_id": self.data_id}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        changed = [
            f"{key} {state.get(key)!r} -> {mine[key]!r}"
            for key in ("n", "seed", "data_id")
            if state.get(key) != mine[key]
        ]
        if changed:
            raise CheckpointMismatch(f"the training data changed since this checkpoint ({', '.join(changed)})")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


class ResumableLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` whose position Lightning checkpoints (see the module docstring).

    Its own generator is reseeded from (seed, epoch) at each pass, so worker seeds never draw on the global RNG
    and are the same whether an epoch started fresh or after a resume.
    """

    sampler: ResumableSampler  # what __init__ is given (DataLoader types it as any Sampler)

    def __init__(self, dataset, sampler: ResumableSampler, **kwargs):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, sampler=sampler, **kwargs)

    def __iter__(self):
        self.generator.manual_seed(derive_seed(self.sampler.seed, "workers", self.sampler.epoch))
        for batch in super().__iter__():
            self.sampler.consumed += len(batch["input_ids"])  # handed to training: counted before the step runs
            yield batch

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


GROUP_WINDOW = 50  # batches per length-sorted window of LengthGroupedSampler


class LengthGroupedSampler(ResumableSampler):
    """`data.group_by_length` (unpacked runs): the epoch's seeded permutation cut into windows of
    `batch_size * GROUP_WINDOW` examples, each window sorted longest first, so a batch holds stories of similar
    length (little padding) and the batches still change from epoch to epoch. Resumes like `ResumableSampler`."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, data_id: str = ""):
        super().__init__(len(lengths), seed, data_id)
        self.lengths, self.batch_size = list(lengths), batch_size

    def epoch_order(self) -> list[int]:
        order, window = super().epoch_order(), self.batch_size * GROUP_WINDOW
        return [
            i
            for start in range(0, len(order), window)
            for i in sorted(order[start : start + window], key=lambda i: -self.lengths[i])
        ]
