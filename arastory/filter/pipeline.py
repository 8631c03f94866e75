"""The filter, start to end: stream pairs → cheap checks and scores (cached) → threshold → dedup → leakage → outputs.

Pass 1 streams the input once in chunks and fills the caches (skipped entirely on a cache hit); pass 2 decides
per pair from small in-memory arrays and memory-mapped embeddings; pass 3 streams the input again and writes
kept.jsonl / rejected.jsonl through temporary files and a rename. Memory stays bounded at millions of pairs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from arastory.data.shards import Shard
from arastory.data.validate import is_placeholder
from arastory.errors import ConfigError, DataError
from arastory.filter.cache import ArrayStore
from arastory.filter.checks import CODE, REASONS, CheckSettings, check_chunk, checks_in_mask, text_hash
from arastory.filter.dedup import (
    DedupSettings,
    LeakageSettings,
    exact_duplicates,
    leaked,
    near_duplicates_measured,
)
from arastory.io import batched, file_fingerprint, fingerprint, iter_jsonl, json_line, open_input
from arastory.records import ParallelRecord, StoryRecord

if TYPE_CHECKING:
    from arastory.filter.encoders import PairEncoder

REQUIRED = ("id", "en_prompt", "en_story", "ar_prompt", "ar_story")
KEPT, REJECTED, REPORT = "kept.jsonl", "rejected.jsonl", "report.json"
ROW_FIELDS = ("id", "en_prompt", "en_story", "ar_prompt", "ar_story", "translator", "flaw")
CURVE = [round(t, 2) for t in np.arange(0.0, 1.0001, 0.01)]


@dataclass
class FilterSettings:
    """Everything that decides which pairs are kept (besides the encoder)."""

    threshold: float = 0.92  # the study's
    checks: CheckSettings = field(default_factory=CheckSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    leakage: LeakageSettings = field(default_factory=LeakageSettings)
    chunk_size: int = 1024  # pairs read, checked and encoded at a time (ours)
    workers: int = 0  # processes for the cheap checks; 0 = one per CPU core, up to 8
    workers_min_items: int = 20_000  # below this many pairs the checks run in-process (pool start-up dominates)
    on_error: str = "raise"  # raise | skip malformed input lines (skipped ones are counted)
    max_failure_rate: float = 0.05  # ours: more skipped input lines than this share fails the run (exit 2)
    max_chars: int = 200_000  # ours: a longer pair (~40k words) is bad input, never checked or encoded
    plots: bool = True
    progress: bool = True

    def __post_init__(self):
        if not 0 <= self.threshold <= 1:
            raise ConfigError("filter.threshold", f"must be in [0, 1], got {self.threshold}")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError("filter.on_error", f"'{self.on_error}' is not one of: raise, skip")
        if self.chunk_size <= 0:
            raise ConfigError("filter.chunk_size", f"must be a positive integer, got {self.chunk_size}")


def iter_pairs(
    path: Path, on_error: str, errors: list, max_chars: int = 200_000, shard: Shard | None = None
) -> Iterator[ParallelRecord]:
    """Parallel records from a JSONL file; a malformed line, a missing/NaN/None field, a pair over `max_chars` or a
    repeated id raises (file:line) or is skipped and counted. Deterministic: every pass skips the same lines.
    With a shard, only its lines (every n-th line from line i + 1) are read as records."""
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path, on_error=on_error, errors=errors):
        if shard and not shard.owns(lineno - 1):
            continue
        bad = [k for k in REQUIRED if not isinstance(obj.get(k), str)]
        if not bad and is_placeholder(obj["id"]):
            bad = ["id"]
        error = DataError(path, f"missing field(s): {', '.join(bad)}", lineno) if bad else None
        size = 0 if bad else sum(len(obj[k]) for k in REQUIRED)
        if error is None and size > max_chars:
            error = DataError(path, f"pair has {size} characters, over filter.max_chars={max_chars}", lineno)
        if error is None and obj["id"] in seen:
            error = DataError(path, f"duplicate id '{obj['id']}' (first on line {seen[obj['id']]})", lineno)
        if error is not None:
            if on_error == "raise":
                raise error
            errors.append(error)
            continue
        seen[obj["id"]] = lineno
        yield ParallelRecord.from_dict(obj)


def count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) + 1


class Filter:
    """One input file, one encoder, one setting: `run()` writes kept/rejected/report (and plots) to `out_dir`."""

    def __init__(
        self,
        input_path: str | Path,
        out_dir: str | Path,
        encoder: PairEncoder,
        settings: FilterSettings,
        eval_records: list[StoryRecord] | None = None,
        encoder_name: str | None = None,
        settings_key: str = "filter",
        shard: Shard | None = None,
    ):
        self.path = Path(input_path)
        self.shard = shard
        if not self.path.exists() and not self.path.is_symlink():
            raise ConfigError("input", f"'{self.path}' does not exist (use 'bundled' or a parallel .jsonl)")
        open_input(self.path).close()  # a directory, a FIFO, a symlink loop, no permission: one line, now
        self.settings_key = settings_key
        self.out = Path(out_dir)
        self.encoder, self.settings = encoder, settings
        self.encoder_name = encoder_name or type(encoder).__name__
        self.encoder_id = encoder.id  # computed once (a local model's id hashes its file list)
        self.eval_records = list(eval_records or []) + self._read_eval_files()
        self.errors: list[DataError] = []
        self.cache_report: dict = {}
        self.seconds: dict[str, float] = {}

    def _read_eval_files(self) -> list[StoryRecord]:
        from arastory.data.readers import read_stories

        if not self.settings.leakage.enabled:
            return []
        out = []
        for name in self.settings.leakage.eval_files:
            if not Path(name).exists():
                raise ConfigError("filter.leakage.eval_files", f"'{name}' does not exist")
            out += read_stories(name)
        return out

    @property
    def guard_leakage(self) -> bool:
        return self.settings.leakage.enabled and bool(self.eval_records)

    # -- pass 1: caches -------------------------------------------------------------------------------------------
    def prepare(self) -> dict[str, ArrayStore]:
        start = time.perf_counter()
        data_fp = file_fingerprint(self.path)
        # which lines become rows: part of every key
        rows: tuple = (self.settings.on_error, self.settings.max_chars, *((str(self.shard),) if self.shard else ()))
        keys = {
            "checks": f"checks-{fingerprint(data_fp, self.settings.checks.as_key(), *rows)}",
            "scores": f"{self.encoder_id}-{fingerprint(data_fp, *rows)}",
        }
        if self.guard_leakage:
            keys["prompts"] = keys["scores"] + "-prompts"
        found = {name: ArrayStore.open_complete(key) for name, key in keys.items()}
        self.cache_report = {name: "hit" if store else "miss" for name, store in found.items()}
        self.cache_report.update(pairs_encoded=0, pairs_checked=0)
        missing = [name for name, store in found.items() if store is None]
        stores = {name: store for name, store in found.items() if store is not None}
        if missing:
            stores.update(self._fill(missing, keys))
        meta = stores["checks"].state.get("meta", {})
        self.read_count, self.error_count = stores["checks"].rows, meta.get("input_errors", 0)
        self.error_examples = meta.get("error_examples", [])
        self.data_fingerprint = data_fp
        self.seconds["prepare"] = round(time.perf_counter() - start, 3)
        return stores

    def _fill(self, missing: list[str], keys: dict[str, str]) -> dict[str, ArrayStore]:
        capacity = count_lines(self.path)
        capacity = self.shard.size(capacity) + 1 if self.shard else capacity
        dim = self.encoder.dim if set(missing) & {"scores", "prompts"} else 0
        columns: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
            "checks": {"code": ("uint8", ()), "failed": ("uint8", ()), "hash": ("uint64", (3,))},
            "scores": {"score": ("float32", ()), "ar": ("float32", (dim,))},
            "prompts": {"prompt": ("float32", (dim,))},
        }
        stores = {name: ArrayStore(keys[name], capacity, columns[name]) for name in missing}
        for name, store in stores.items():
            if store.done:
                self.cache_report[name] = f"resumed at {store.done}"
        pool = self._pool(capacity)
        rows = 0
        bar = tqdm(
            total=capacity - 1,
            unit="pair",
            desc=f"filter: checks+scores ({', '.join(missing)})",
            disable=not self.settings.progress,
            dynamic_ncols=True,
        )
        try:
            pairs = iter_pairs(self.path, self.settings.on_error, self.errors, self.settings.max_chars, self.shard)
            for batch in batched(pairs, self.settings.chunk_size):
                self._fill_chunk(stores, rows, batch, pool)
                rows += len(batch)
                bar.update(len(batch))
        finally:
            bar.close()
            if pool is not None:
                pool.close()
        if self.shard:  # bad lines of other shards are theirs to count
            self.errors = [e for e in self.errors if e.line is None or self.shard.owns(e.line - 1)]
        examples = [str(e) for e in self.errors[:5]]
        for store in stores.values():
            store.finish(rows, input_errors=len(self.errors), error_examples=examples)
        return stores

    def _fill_chunk(self, stores: dict[str, ArrayStore], start: int, batch: list[ParallelRecord], pool) -> None:
        def needed(name: str) -> bool:
            return name in stores and start + len(batch) > stores[name].done

        pending = None
        if needed("checks") and pool is not None:
            parts = np.array_split(np.arange(len(batch)), pool._processes)
            pending = pool.starmap_async(
                check_chunk, [([batch[i] for i in p], self.settings.checks) for p in parts if len(p)]
            )
        if needed("scores"):
            scores, ar = self.encoder.encode_pairs(batch)
            stores["scores"].write(start, {"score": scores, "ar": ar})
            self.cache_report["pairs_encoded"] += len(batch)
        if needed("prompts"):
            stores["prompts"].write(start, {"prompt": self.encoder.embed([p.ar_prompt for p in batch])})
        if needed("checks"):
            chunks = pending.get() if pending is not None else [check_chunk(batch, self.settings.checks)]
            stores["checks"].write(
                start,
                {
                    "code": np.concatenate([c for c, _, _ in chunks]),
                    "failed": np.concatenate([m for _, m, _ in chunks]),
                    "hash": np.concatenate([h for _, _, h in chunks]),
                },
            )
            self.cache_report["pairs_checked"] += len(batch)

    def _pool(self, capacity: int):
        workers = self.settings.workers or min(8, os.cpu_count() or 1)
        if workers <= 1 or capacity < self.settings.workers_min_items:
            return None
        import multiprocessing

        return multiprocessing.get_context("spawn").Pool(workers)

    # -- pass 2: decisions ----------------------------------------------------------------------------------------
    def decide(self, stores: dict[str, ArrayStore]) -> tuple[np.ndarray, np.ndarray, dict]:
        start = time.perf_counter()
        codes = np.array(stores["checks"].read("code"))
        hashes = stores["checks"].read("hash")
        scores = np.array(stores["scores"].read("score"))
        embeddings = stores["scores"].read("ar")
        counts: dict[str, Any] = {"read": len(codes), "input_errors": int(self.error_count)}
        counts["rejected_by_check"] = {name: int((codes == CODE[name]).sum()) for name in self.settings.checks.enabled}
        counts["passed_checks"] = int((codes == 0).sum())
        codes[(codes == 0) & (scores < self.settings.threshold)] = CODE["below_threshold"]
        counts["below_threshold"] = int((codes == CODE["below_threshold"]).sum())
        counts["kept_at_threshold"] = int((codes == 0).sum())
        extra: dict[str, Any] = {"index": "none", "recall": None}
        if self.settings.dedup.exact:
            codes[exact_duplicates(np.flatnonzero(codes == 0), hashes)] = CODE["duplicate"]
        counts["duplicate"] = int((codes == CODE["duplicate"]).sum())
        if self.settings.dedup.near:
            dups, searched = near_duplicates_measured(np.flatnonzero(codes == 0), embeddings, self.settings.dedup)
            extra.update(searched)
            codes[dups] = CODE["near_duplicate"]
        counts["near_duplicate"] = int((codes == CODE["near_duplicate"]).sum())
        counts["deduplicated"] = int((codes == 0).sum())
        if self.guard_leakage:
            codes[self._leaked(np.flatnonzero(codes == 0), stores, hashes, embeddings)] = CODE["leakage"]
        counts["leakage"] = int((codes == CODE["leakage"]).sum())
        counts["kept"] = int((codes == 0).sum())
        counts["rejected"] = counts["read"] - counts["kept"]
        passed = np.sort(scores[_passed_checks(stores)])
        extra["curve"] = [[t, int(len(passed) - np.searchsorted(passed, t, side="left"))] for t in CURVE]
        self.seconds["decide"] = round(time.perf_counter() - start, 3)
        return codes, scores, {"counts": counts, **extra}

    def _leaked(self, candidates, stores, hashes, embeddings) -> np.ndarray:
        texts = [f"{r.prompt}\n{r.story}" for r in self.eval_records]
        eval_hashes = {text_hash(t) for r in self.eval_records for t in (r.prompt, r.story)} - {0}
        return leaked(
            candidates,
            embeddings,
            stores["prompts"].read("prompt"),
            hashes,
            self.encoder.embed(texts),
            self.encoder.embed([r.prompt for r in self.eval_records]),
            eval_hashes,
            self.settings.leakage,
        )

    # -- pass 3: outputs ------------------------------------------------------------------------------------------
    def write(self, codes: np.ndarray, scores: np.ndarray, failed: np.ndarray) -> dict:
        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        labels: dict[str, dict] = {}
        tmp = {name: self.out / f".{name}.tmp" for name in (KEPT, REJECTED)}
        handles = {name: open(path, "w", encoding="utf-8") for name, path in tmp.items()}
        try:
            pairs = iter_pairs(self.path, "skip", [], self.settings.max_chars, self.shard)  # errors: counted in pass 1
            for i, pair in enumerate(
                tqdm(
                    pairs,
                    total=len(codes),
                    unit="pair",
                    desc="filter: write",
                    disable=not self.settings.progress,
                    dynamic_ncols=True,
                )
            ):
                row = self._row(pair, int(codes[i]), float(scores[i]), int(failed[i]))
                handles[KEPT if codes[i] == 0 else REJECTED].write(json_line(row))
                _count_label(labels, pair.flaw, int(codes[i]), float(scores[i]))
            for handle in handles.values():
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
            for name, path in tmp.items():
                os.replace(path, self.out / name)
        finally:
            for handle in handles.values():
                handle.close()
            for path in tmp.values():
                path.unlink(missing_ok=True)
        self.seconds["write"] = round(time.perf_counter() - start, 3)
        return labels

    def _row(self, pair: ParallelRecord, code: int, score: float, failed: int) -> dict:
        row = {k: getattr(pair, k) for k in ROW_FIELDS}  # shallow: rows are written, never modified
        row["meta"] = {**(pair.meta or {}), "similarity": round(score, 4), "encoder": self.encoder_id}
        if code:
            row["reason"], row["score"] = REASONS[code], round(score, 4)
            if code < CODE["below_threshold"]:
                row["failed_checks"] = checks_in_mask(failed)
        return row

    def run(self, wandb_cfg: dict | None = None) -> dict:
        from arastory.filter.report import build_report, log_to_wandb, write_plots

        stores = self.prepare()
        codes, scores, decided = self.decide(stores)
        labels = self.write(codes, scores, stores["checks"].read("failed"))
        report = build_report(self, decided, scores, codes, labels)
        if self.settings.plots:
            report["plots"] = write_plots(
                self.out, scores[_passed_checks(stores)], decided["curve"], self.settings.threshold
            )
        from arastory.io import atomic_write_json

        atomic_write_json(self.out / REPORT, report)
        if self.shard:
            self.write_shard(stores, codes, report)
        if wandb_cfg and wandb_cfg.get("mode", "disabled") != "disabled":
            log_to_wandb(self.out, report, wandb_cfg)
        self.check_input_budget(report["counts"])
        return report

    def write_shard(self, stores: dict, codes: np.ndarray, report: dict) -> None:
        """The kept pairs' vectors and hashes (what `python -m arastory.data merge` dedups across shards with) and
        the shard's manifest."""
        assert self.shard is not None  # run() writes a shard only when there is one
        from arastory.data.merge import KEPT_HASHES, KEPT_VECTORS
        from arastory.data.shards import write_manifest

        kept = np.flatnonzero(codes == 0)
        embeddings = stores["scores"].read("ar")
        vectors = np.lib.format.open_memmap(
            self.out / f".{KEPT_VECTORS}.tmp", mode="w+", dtype=np.float32, shape=(len(kept), embeddings.shape[1])
        )
        for begin in range(0, len(kept), 65536):
            vectors[begin : begin + 65536] = embeddings[kept[begin : begin + 65536]]
        vectors.flush()
        del vectors
        os.replace(self.out / f".{KEPT_VECTORS}.tmp", self.out / KEPT_VECTORS)
        np.save(self.out / f".{KEPT_HASHES}.tmp.npy", np.asarray(stores["checks"].read("hash"))[kept])
        os.replace(self.out / f".{KEPT_HASHES}.tmp.npy", self.out / KEPT_HASHES)
        settings = self.settings
        identity = {
            "input": self.data_fingerprint,
            "encoder": report["encoder"],
            "threshold": settings.threshold,
            "checks": settings.checks.as_key(),
            "dedup": dict(vars(settings.dedup)),
            "leakage": {
                "enabled": settings.leakage.enabled,
                "similarity": settings.leakage.similarity,
                "eval_items": len(self.eval_records),
            },
            "max_chars": settings.max_chars,
        }
        write_manifest(self.out, "filter", self.shard, True, identity, report["counts"])

    def check_input_budget(self, counts: dict) -> None:
        """Stop (exit 2, after the outputs are written) when the input was empty or too many lines were skipped."""
        from arastory.budget import check_failure_budget

        check_failure_budget(
            f"filter input {self.path}",
            counts["read"],
            counts["input_errors"],
            self.settings.max_failure_rate,
            noun="lines",
            failed_are_input=True,
            key=f"{self.settings_key}.max_failure_rate",
            detail=f"first: {self.error_examples[0]}" if self.error_examples else "",
        )


def _passed_checks(stores) -> np.ndarray:
    return np.asarray(stores["checks"].read("code")) == 0


def _count_label(labels: dict, flaw, code: int, score: float) -> None:
    group = labels.setdefault("flawed" if flaw else "faithful", {"n": 0, "kept": 0, "score_sum": 0.0, "by_reason": {}})
    group["n"] += 1
    group["kept"] += code == 0
    group["score_sum"] += score
    group["by_reason"][REASONS[code]] = group["by_reason"].get(REASONS[code], 0) + 1
