"""Merge the shards of a data stage into <out>/ as if one job had run: every shard present and finished, the
shards' rows in order, and duplicates across shards removed (the copy in the lower shard is kept).

    python -m arastory.data merge outputs/translate/tinystories        # parallel.jsonl
    python -m arastory.data merge outputs/filter/tinystories           # kept.jsonl (exact + near duplicates, faiss)
    python -m arastory.data merge outputs/synth/egy                    # stories.jsonl (the duplicate gates, first n)

Rows stream from the shards' files to a temporary file renamed into place; only ids, hashes and the filter's
kept-pair vectors (memory-mapped) are indexed, so memory does not grow with the stories' text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import orjson

from arastory.data.shards import read_shards
from arastory.errors import DataError
from arastory.io import atomic_write_json, iter_jsonl, json_line

REPORT = "merge_report.json"


class StreamWriter:
    """JSONL rows written to `<path>.tmp` and renamed to `path` when all are written (never half a file)."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.merge.tmp")
        self.rows = 0

    def __enter__(self):
        self.handle = open(self.tmp, "w", encoding="utf-8")
        return self

    def write(self, row: dict) -> None:
        self.handle.write(json_line(row))
        self.rows += 1

    def __exit__(self, kind, *exc):
        if kind is None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        self.handle.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def rows_of(path: Path) -> Iterator[dict]:
    return (row for _, row in iter_jsonl(path)) if path.exists() else iter(())


def merge(out: str | Path, allow_incomplete: bool = False) -> dict:
    """Merge `<out>/shards/*` by the stage their manifests name; writes and returns <out>/merge_report.json."""
    out = Path(out)
    stage, shards = read_shards(out, allow_incomplete)
    report = {"translate": merge_translate, "filter": merge_filter, "synthesize": merge_synthesize}[stage](out, shards)
    report = {
        "stage": stage,
        "shards": len(shards),
        "out": str(out),
        "incomplete_shards": [m["shard"] for _, m in shards if not m["complete"]],
        **report,
    }
    atomic_write_json(out / REPORT, report)
    return report


def summed(shards: list, keys: Iterable[str]) -> dict:
    return {key: sum(int(m["counts"].get(key) or 0) for _, m in shards) for key in keys}


# ------------------------------------------------------------------------------------------------------- translate
def merge_translate(out: Path, shards: list) -> dict:
    """parallel.jsonl: the shards' rows in shard order; an id translated by two shards is kept once."""
    seen: set[str | None] = set()  # a row without an id is kept once
    duplicates = 0
    with StreamWriter(out / "parallel.jsonl") as writer:
        for shard_dir, _ in shards:
            for row in rows_of(shard_dir / "parallel.jsonl"):
                if row.get("id") in seen:
                    duplicates += 1
                    continue
                seen.add(row.get("id"))
                writer.write(row)
    counts = summed(shards, ("read", "failed", "skipped_bad_input", "skipped_too_long", "duplicate_ids"))
    return {
        "rows": writer.rows,
        "cross_shard_duplicate_ids": duplicates,
        "counts": counts,
        "files": {"parallel": "parallel.jsonl"},
    }


# ---------------------------------------------------------------------------------------------------------- filter
KEPT_VECTORS, KEPT_HASHES = "kept_vectors.npy", "kept_hashes.npy"


def merge_filter(out: Path, shards: list) -> dict:
    """kept.jsonl: the shards' kept pairs minus the exact and near duplicates across shards, found with the same
    settings over the vectors each shard saved for its kept pairs (a faiss index over all of them)."""
    from arastory.filter.dedup import DedupSettings, exact_duplicates, near_duplicates_measured

    identity = shards[0][1]["identity"]
    dedup = DedupSettings(**identity["dedup"])
    sizes = [len(np.load(d / KEPT_HASHES, mmap_mode="r")) for d, _ in shards]
    total = sum(sizes)
    hashes = np.concatenate([np.load(d / KEPT_HASHES) for d, _ in shards]) if total else np.zeros((0, 3), np.uint64)
    vectors = _concatenated_vectors(out, shards, total)
    candidates = np.arange(total)
    exact = exact_duplicates(candidates, hashes) if dedup.exact else np.array([], dtype=np.int64)
    near, searched = np.array([], dtype=np.int64), {"index": "none", "recall": None}
    if dedup.near and total:
        near, searched = near_duplicates_measured(np.setdiff1d(candidates, exact), vectors, dedup)
    reasons = {int(i): "duplicate" for i in exact} | {int(i): "near_duplicate" for i in near}
    position = 0
    with StreamWriter(out / "kept.jsonl") as kept, StreamWriter(out / "cross_shard_rejected.jsonl") as rejected:
        for (shard_dir, _), _size in zip(shards, sizes, strict=False):
            for row in rows_of(shard_dir / "kept.jsonl"):
                reason = reasons.get(position)
                if reason:
                    rejected.write({**row, "reason": reason, "cross_shard": True})
                else:
                    kept.write(row)
                position += 1
    (out / f".{KEPT_VECTORS}.merge").unlink(missing_ok=True)
    counts = summed(
        shards,
        ("read", "input_errors", "passed_checks", "below_threshold", "duplicate", "near_duplicate", "leakage", "kept"),
    )
    counts.update(cross_shard_duplicate=len(exact), cross_shard_near_duplicate=len(near), kept=kept.rows)
    counts["rejected"] = counts["read"] - kept.rows
    return {
        "counts": counts,
        "dedup_index": searched["index"],
        "dedup_recall": searched["recall"],
        "threshold": identity["threshold"],
        "encoder": identity["encoder"],
        "files": {"kept": "kept.jsonl", "cross_shard_rejected": "cross_shard_rejected.jsonl"},
    }


def _concatenated_vectors(out: Path, shards: list, total: int):
    """The shards' kept-pair vectors as one memory-mapped array, copied chunk by chunk."""
    first = np.load(shards[0][0] / KEPT_VECTORS, mmap_mode="r")
    merged = np.lib.format.open_memmap(
        out / f".{KEPT_VECTORS}.merge", mode="w+", dtype=np.float32, shape=(total, first.shape[1])
    )
    start = 0
    for shard_dir, _ in shards:
        part = np.load(shard_dir / KEPT_VECTORS, mmap_mode="r")
        for begin in range(0, len(part), 65536):
            block = part[begin : begin + 65536]
            merged[start + begin : start + begin + len(block)] = block
        start += len(part)
    merged.flush()
    return merged


# ------------------------------------------------------------------------------------------------------ synthesize
def rows_by_id(paths: list[Path]) -> Iterator[dict]:
    """The rows of `paths` in id order (ties in file and line order), read back one at a time: only each row's id,
    file and byte offset are held and sorted, not the stories."""
    index = []
    for number, path in enumerate(paths):
        for lineno, offset, row in _rows_with_offsets(path):
            if "id" not in row:
                raise DataError(path, "row has no id", lineno)
            index.append((row["id"], number, offset))
    index.sort()
    handles = {number: open(path, "rb") for number, path in enumerate(paths) if path.exists()}
    try:
        for _, number, offset in index:
            handles[number].seek(offset)
            yield orjson.loads(handles[number].readline())
    finally:
        for handle in handles.values():
            handle.close()


def _rows_with_offsets(path: Path) -> Iterator[tuple[int, int, dict]]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        offset = 0
        for lineno, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield lineno, offset, orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise DataError(path, "not a JSON object", lineno) from None
            offset += len(line)


def merge_synthesize(out: Path, shards: list) -> dict:
    """stories.jsonl: the first n of the shards' kept stories (their surplus included) in prompt order, passed again
    through the duplicate gates (exact and MinHash near-duplicates) so a story that repeats one from another shard is
    rejected as it would be in one job; the rest go to surplus.jsonl. Fewer than n left: `short_by` in the report."""
    from arastory.synthesize.gates import QualityGates

    identity = shards[0][1]["identity"]
    gates = QualityGates(**identity["gates"], identifier=None)
    stories = rows_by_id([shard_dir / name for shard_dir, _ in shards for name in ("stories.jsonl", "surplus.jsonl")])
    by_gate = {"duplicate": 0, "near_duplicate": 0}
    with (
        StreamWriter(out / "stories.jsonl") as kept,
        StreamWriter(out / "surplus.jsonl") as surplus,
        StreamWriter(out / "rejected.jsonl") as rejected,
    ):
        for shard_dir, _ in shards:
            for row in rows_of(shard_dir / "rejected.jsonl"):
                rejected.write(row)
        for row in stories:
            result = gates._duplicates(row["id"], row["story"], {})
            if not result.kept:
                assert result.reason is not None  # a rejection names its gate
                by_gate[result.reason] += 1
                rejected.write({**row, "reason": result.reason, "detail": result.detail, "cross_shard": True})
            else:
                (kept if kept.rows < identity["n"] else surplus).write(row)
    counts = summed(shards, ("generated", "failed", "rejected_total"))
    counts.update(requested=identity["n"], kept=kept.rows, surplus=surplus.rows, cross_shard=by_gate)
    return {
        "counts": counts,
        "short_by": identity["n"] - kept.rows,
        "files": {"stories": "stories.jsonl", "surplus": "surplus.jsonl", "rejected": "rejected.jsonl"},
    }
