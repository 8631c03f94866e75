"""Shards of a data stage: `shard=i/n` takes every n-th item of the input (from item i) into <out>/shards/<i>-of-<n>/,
each shard resumable on its own; a manifest (shard.json) in each shard dir says what it ran and whether it finished.
`python -m arastory.data merge <out>` puts the shards back together (arastory/data/merge.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from arastory.errors import ConfigError, DataError

MANIFEST = "shard.json"
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, value: object, key: str = "shard") -> Shard | None:
        """`None` (the whole input) or `i/n` with 0 <= i < n."""
        if value is None or str(value).strip() in ("", "null", "None"):
            return None
        match = _SPEC.match(str(value))
        if not match or not int(match.group(1)) < int(match.group(2)):
            raise ConfigError(key, f"'{value}' is not i/n with 0 <= i < n (e.g. shard=0/4 ... shard=3/4)")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, position: int) -> bool:
        """Whether the item at 0-based `position` of the input belongs to this shard."""
        return position % self.count == self.index

    def select(self, items: Iterable) -> Iterator:
        """This shard's items of a stream, in order (nothing else is held)."""
        return (item for position, item in enumerate(items) if self.owns(position))

    def dir(self, out: str | Path) -> Path:
        return Path(out) / "shards" / self.name

    def size(self, total: int) -> int:
        """How many of `total` items this shard gets."""
        return len(range(self.index, total, self.count))


def shard_dir(out: str | Path | None, shard: object) -> str | None:
    """Resolver `${shard_dir:${out},${shard}}`: the dir a (sharded) job writes to; None when `out` is None."""
    spec = Shard.parse(shard)
    if out is None:
        return None
    return str(spec.dir(out)) if spec else str(out)


def shard_subdir(shard: object, default: object) -> str:
    """Resolver `${shard_subdir:${shard},${hydra.job.num}}`: a sweep over shards puts each job in its shard dir."""
    spec = Shard.parse(shard)
    return f"shards/{spec.name}" if spec else str(default)


def write_manifest(
    shard_dir_path: str | Path, stage: str, shard: Shard, complete: bool, identity: dict, counts: dict
) -> None:
    """What the shard ran (`identity` must agree across shards), whether it reached the end of its input, its counts."""
    from arastory.io import atomic_write_json

    atomic_write_json(
        Path(shard_dir_path) / MANIFEST,
        {
            "stage": stage,
            "shard": str(shard),
            "index": shard.index,
            "count": shard.count,
            "complete": bool(complete),
            "identity": identity,
            "counts": counts,
        },
    )


def read_shards(out: str | Path, allow_incomplete: bool = False) -> tuple[str, list[tuple[Path, dict]]]:
    """(stage, [(shard dir, manifest)] in shard order) of `<out>/shards/`, after checking that every shard of the
    same split is there, ran the same job and finished; one-line DataError naming what is missing otherwise."""
    root = Path(out) / "shards"
    found = sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []
    if not found:
        raise DataError(root, "no shard dirs with a shard.json (run the stage with shard=i/n and out=<this dir>)")
    manifests = [(path.parent, json.loads(path.read_text(encoding="utf-8"))) for path in found]
    counts = {m["count"] for _, m in manifests}
    stages = {m["stage"] for _, m in manifests}
    if len(counts) > 1 or len(stages) > 1:
        raise DataError(root, f"shards of different splits or stages: {sorted(p.name for p, _ in manifests)}")
    count, stage = counts.pop(), stages.pop()
    by_index = {m["index"]: (path, m) for path, m in manifests}
    missing = [f"{i}/{count}" for i in range(count) if i not in by_index]
    if missing:
        raise DataError(
            root, f"{len(missing)} of {count} shards missing: {', '.join(missing[:8])}; run them with shard=<i>/{count}"
        )
    ordered = [by_index[i] for i in range(count)]
    first = ordered[0][1]["identity"]
    for path, manifest in ordered[1:]:
        if manifest["identity"] != first:
            differs = sorted(
                k for k in set(first) | set(manifest["identity"]) if first.get(k) != manifest["identity"].get(k)
            )
            raise DataError(path / MANIFEST, f"ran another job than shard 0/{count} (differs in: {', '.join(differs)})")
    unfinished = [m["shard"] for _, m in ordered if not m["complete"]]
    if unfinished and not allow_incomplete:
        raise DataError(
            root,
            f"shards not finished: {', '.join(unfinished[:8])}; rerun them with the same "
            "command (each resumes), or merge anyway with --allow-incomplete",
        )
    return stage, ordered
