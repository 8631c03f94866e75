"""Assemble each stage's training records and the per-variety validation sets from the `data` config."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from arastory.data.splits import nested_subset, split_heldout
from arastory.data.stored import AnyStory
from arastory.errors import ConfigError
from arastory.filter.training import filter_enabled, filter_translated
from arastory.io import fingerprint
from arastory.records import VARIETIES, StoryRecord

DIALECTS = (*VARIETIES, "all")


def selected_varieties(dialect: str) -> tuple[str, ...]:
    if dialect not in DIALECTS:
        raise ConfigError("dialect", f"'{dialect}' is not one of: {', '.join(DIALECTS)}")
    return VARIETIES if dialect == "all" else (dialect,)


@dataclass
class TrainingData:
    train: dict[str, list[AnyStory]]  # data name (synthetic, translated) → training records
    val: dict[str, list[AnyStory]]  # variety → held-out synthetic records
    counts: dict[str, dict] = field(default_factory=dict)


def build_training_data(
    data_cfg: DictConfig, dialect: str, needed: list[str], seed: int, out_dir: str | Path | None = None
) -> TrainingData:
    """Load each data source a stage needs; split held-out records by id hash, then take nested subsets.

    The held-out split is keyed on `data.split_seed` (one validation set per study, whatever the training `seed`);
    the training subsets on `seed`. With `data.filter.enabled`, the translated pairs pass the translation filter
    first (outputs in <out_dir>/filter).
    """
    varieties = selected_varieties(dialect)
    split_seed = heldout_seed(data_cfg, seed)
    train, counts = {}, {}
    val: dict[str, list[AnyStory]] = {}
    records: Sequence[AnyStory]
    for name in needed:
        source = instantiate(data_cfg[name])
        filtered = None
        if name == "translated" and filter_enabled(data_cfg):
            records, filtered = filter_translated(
                source,
                data_cfg.filter,
                _heldout_synthetic(data_cfg, split_seed),
                Path(out_dir) / "filter" if out_dir else None,
            )
        else:
            records = source.load()
        if name == "synthetic":
            records = [r for r in records if r.variety in varieties]
        fit, held = split_heldout(records, data_cfg.val_fraction, split_seed)
        fit = (
            _subset_per_variety(fit, source.size, seed)
            if name == "synthetic"
            else nested_subset(fit, source.size, seed)
        )
        if not fit:
            raise ConfigError(
                f"data.{name}",
                f"no training examples left for dialect={dialect} "
                f"(size={source.size}, {len(records)} records read from {source.path})",
            )
        train[name] = fit
        counts[name] = {
            "read": len(records),
            "train": len(fit),
            "heldout": len(held),
            "train_per_variety": dict(Counter(r.variety for r in fit)),
        }
        if filtered:
            counts[name]["filter"] = filtered
        if name == "synthetic":
            val = {v: [r for r in held if r.variety == v] for v in varieties}
    if not val and "synthetic" not in needed:
        # A strategy without synthetic data still validates on the held-out synthetic stories.
        records = [r for r in instantiate(data_cfg.synthetic).load() if r.variety in varieties]
        held = split_heldout(records, data_cfg.val_fraction, split_seed)[1]
        val = {v: [r for r in held if r.variety == v] for v in varieties}
    return TrainingData(train=train, val=val, counts=counts)


def heldout_seed(data_cfg: DictConfig, seed: int) -> int:
    """`data.split_seed`; run dirs from before it existed split on the training seed, and still do."""
    split_seed = data_cfg.get("split_seed")
    return seed if split_seed is None else int(split_seed)


def val_fingerprint(val: Mapping[str, Sequence[AnyStory]]) -> dict[str, str]:
    """A short hash of the sorted held-out ids per variety and of all of them (`all`): equal hashes, same yardstick."""
    ids = {variety: sorted(r.id for r in records) for variety, records in val.items()}
    return {
        "all": fingerprint(sorted(i for v in ids.values() for i in v)),
        **{v: fingerprint(i) for v, i in ids.items()},
    }


def _heldout_synthetic(data_cfg: DictConfig, seed: int) -> list[StoryRecord]:
    """Every variety's held-out synthetic stories: evaluation items no translated training pair may near-duplicate."""
    return split_heldout(instantiate(data_cfg.synthetic).load(), data_cfg.val_fraction, seed)[1]


def _subset_per_variety(records: list[AnyStory], size: int | None, seed: int) -> list[AnyStory]:
    """`size` applies per variety, so `dialect=all data.synthetic.size=500` trains on 500 of each."""
    out = []
    for variety in VARIETIES:
        out += nested_subset([r for r in records if r.variety == variety], size, seed)
    return out
