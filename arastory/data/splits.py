"""Deterministic held-out splits and nested subsets, both keyed on record ids so they never depend on file order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


def _unit_hash(seed: int, salt: str, record_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_heldout(records: Sequence[T], fraction: float, seed: int = 0) -> tuple[list[T], list[T]]:
    """(train, held-out): a record is held out when the hash of its id falls below `fraction`.

    The split of a record never changes when other records are added or removed, so validation
    sets agree across dataset sizes and sweeps.
    """
    train: list[T] = []
    held: list[T] = []
    for record in records:
        (held if _unit_hash(seed, "heldout", record.id) < fraction else train).append(record)
    return train, held


def nested_subset(records: Sequence[T], size: int | None, seed: int = 0) -> list[T]:
    """The first `size` records in a seeded hash order: the 500-subset is inside the 1000-subset."""
    ordered = sorted(records, key=lambda r: _unit_hash(seed, "subset", r.id))
    return ordered if size is None or size >= len(ordered) else ordered[:size]
