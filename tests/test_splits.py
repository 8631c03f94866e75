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


def compose_train(*overrides: str):
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def heldout(*overrides: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    from arastory.train.data import build_training_data, val_fingerprint

    cfg = compose_train(*overrides)
    data = build_training_data(cfg.data, cfg.dialect, needed=["synthetic"], seed=cfg.seed)
    return {v: sorted(r.id for r in records) for v, records in data.val.items()}, val_fingerprint(data.val)


def test_one_validation_set_per_study_across_seeds_and_sizes(released_dir):
    released = [f"data.synthetic.path={released_dir}", "data=arastories", "dialect=egy"]
    ids, fingerprint = heldout(*released, "seed=42")
    assert 60 < len(ids["egy"]) < 120
    assert heldout(*released, "seed=43") == (ids, fingerprint), "the training seed does not move the yardstick"
    assert heldout(*released, "seed=43", "data.synthetic.size=100") == (ids, fingerprint), "nor does the size"
    all_ids, all_fingerprint = heldout(*released, "dialect=all", "seed=7")
    assert all_ids["egy"] == ids["egy"] and all_fingerprint["egy"] == fingerprint["egy"] != all_fingerprint["all"]
    other_ids, other = heldout(*released, "data.split_seed=1")
    assert other_ids["egy"] != ids["egy"] and other["egy"] != fingerprint["egy"], "split_seed is what picks the set"


def test_training_subsets_still_follow_the_seed():
    from arastory.train.data import build_training_data

    def train_ids(seed):
        cfg = compose_train("dialect=egy", "data.synthetic.size=10", f"seed={seed}")
        return {
            r.id for r in build_training_data(cfg.data, cfg.dialect, ["synthetic"], seed=cfg.seed).train["synthetic"]
        }

    assert train_ids(1) != train_ids(2)
