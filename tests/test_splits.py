"""Held-out splits and size subsets are deterministic, independent of order, and nested across sizes."""

import random

from arastory.data.bundled import load_bundled_stories
from arastory.data.splits import nested_subset, split_heldout


def test_heldout_split_is_stable_under_reordering_and_additions():
    records = load_bundled_stories()
    train, held = split_heldout(records, 0.1, seed=42)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    _, held_shuffled = split_heldout(shuffled + shuffled[:0], 0.1, seed=42)
    assert {r.id for r in held} == {r.id for r in held_shuffled}
    _, held_subset = split_heldout(records[:100], 0.1, seed=42)
    assert {r.id for r in held_subset} <= {r.id for r in held}
    assert 0.03 < len(held) / len(records) < 0.2 and not {r.id for r in train} & {r.id for r in held}


def test_subsets_are_nested_across_sizes_and_seeded():
    records = load_bundled_stories()
    small, large = nested_subset(records, 20, seed=1), nested_subset(records, 50, seed=1)
    assert len(small) == 20 and len(large) == 50 and {r.id for r in small} <= {r.id for r in large}
    assert {r.id for r in nested_subset(records[::-1], 20, seed=1)} == {r.id for r in small}
    assert {r.id for r in nested_subset(records, 20, seed=2)} != {r.id for r in small}
    assert len(nested_subset(records, None, seed=1)) == len(records)
