"""Translate a stream of English records batch by batch into <out>/parallel.jsonl, resumably, and write a report.

Each finished batch is appended and fsynced before the next is sent, so a killed run loses at most the batch in
flight; a rerun skips every id already in parallel.jsonl and never pays for it again. The answered texts of items
that failed (a prompt translated, its story not) go to partial.jsonl, so a rerun asks only for what got no answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from arastory.data.shards import Shard, write_manifest
from arastory.errors import ArastoryError, ConfigError, DataError
from arastory.io import JsonlAppender, atomic_write_json, batched, fingerprint, iter_jsonl, read_jsonl
from arastory.plain import dict_config, plain_dict
from arastory.records import ParallelRecord
from arastory.redact import scrub
from arastory.translate.base import TranslationFailed, Translator, TranslatorError
from arastory.translate.sources import SourceItem, fields_from_config, iter_source, source_kind, source_size

ON_BAD_INPUT = ("skip", "stop")
BAD_EXAMPLES_IN_REPORT = 20


@dataclass
class Counts:
    read: int = 0
    translated: int = 0
    already_done: int = 0
    failed: int = 0
    skipped_bad_input: int = 0
    skipped_too_long: int = 0
    duplicate_ids: int = 0
    reused_partial: int = 0
    trimmed_bytes: int = 0  # a partial last row left by a killed run, cut when parallel.jsonl was reopened
    bad_examples: list[str] = field(default_factory=list)


def check_config(cfg: DictConfig) -> None:
    """Fail fast, before a model loads or a request is sent."""
    if cfg.on_bad_input not in ON_BAD_INPUT:
        raise ConfigError("on_bad_input", f"'{cfg.on_bad_input}' is not one of: {', '.join(ON_BAD_INPUT)}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ConfigError("batch_size", f"must be a positive integer, got {cfg.batch_size}")
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise ConfigError("limit", f"must be a positive integer or null, got {cfg.limit}")
    if not cfg.out:
        raise ConfigError("out", "is required: the output dir, e.g. out=outputs/translate/tinystories")
    if not isinstance(cfg.max_story_chars, int) or cfg.max_story_chars < 1:
        raise ConfigError("max_story_chars", f"must be a positive integer, got {cfg.max_story_chars}")
    source_kind(str(cfg.source))


def build_translator(cfg: DictConfig) -> Translator:
    """The configured translator; its own one-line errors (missing key, unknown model) come through unwrapped."""
    spec = plain_dict(cfg, resolve=True)
    spec.pop("name", None)
    try:
        return instantiate(spec)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ArastoryError):
            raise cause from None
        message = str(cause or error).strip().splitlines()
        raise ConfigError("translator", message[0][:300] if message else type(cause or error).__name__) from None


def translate(cfg: DictConfig) -> dict:
    """Run the whole job described by arastory/conf/translate.yaml; returns the report (also in <out>/report.json).
    With `shard=i/n`, the job is every n-th source item from item i, in <out>/shards/<i>-of-<n>."""
    check_config(cfg)
    shard = Shard.parse(cfg.get("shard"))
    if shard:
        cfg = dict_config(OmegaConf.merge(cfg, {"out": str(shard.dir(cfg.out))}))
    out = Path(cfg.out)
    translator = build_translator(cfg.translator)
    _check_manifest(out, cfg, translator)
    parallel_path = out / "parallel.jsonl"
    done = (
        {row["id"] for _, row in iter_jsonl(parallel_path, on_error="skip") if "id" in row}
        if parallel_path.exists()
        else set()
    )
    counts, started, status = Counts(), time.time(), "interrupted"
    try:
        status = _run(cfg, translator, out, done, counts)
    except (DataError, TranslatorError, ConfigError) as error:
        status = f"stopped: {error}"
        raise
    finally:
        report = _report(cfg, translator, counts, len(done), time.time() - started, status)
        atomic_write_json(out / "report.json", report)
        if shard:
            write_manifest(out, "translate", shard, status == "complete", _job_identity(cfg, translator), report)
    return report


def _job_identity(cfg: DictConfig, translator: Translator) -> dict:
    """What every shard of one translation must share."""
    return {
        "source": str(cfg.source),
        "split": cfg.split,
        "translator": translator.identity(),
        "limit": cfg.limit,
        "fields": OmegaConf.to_container(cfg.fields, resolve=True),
        "id_prefix": cfg.id_prefix,
    }


def _run(cfg: DictConfig, translator: Translator, out: Path, done: set, counts: Counts) -> str:
    source = str(cfg.source)
    items = iter_source(source, fields_from_config(cfg.fields), split=cfg.split, id_prefix=cfg.id_prefix)
    total = source_size(source, cfg.split)
    total = min(total, cfg.limit) if total and cfg.limit else (total or cfg.limit)
    if shard := Shard.parse(cfg.get("shard")):  # `limit` counts items of the whole source, before sharding
        items = shard.select(islice(items, cfg.limit) if cfg.limit else items)
        total = shard.size(total) if total else None
    failed_in_a_row, last_error = 0, ""
    logs = _RunLogs(out)
    partial = PartialAnswers(out / PARTIAL)
    with (
        JsonlAppender(out / "parallel.jsonl") as writer,
        logs,
        partial,
        tqdm(total=total, desc=f"translate ({translator.label})", unit="item", dynamic_ncols=True) as bar,
    ):
        counts.trimmed_bytes = writer.trimmed_bytes
        for batch in batched(_todo(items, cfg, done, counts, logs, bar), cfg.batch_size):
            rows, failures = _translate_batch(batch, translator, cfg, partial, counts)
            writer.write_many(rows)  # the batch is on disk before the next is sent
            done.update(row["id"] for row in rows)
            for item, error in failures:
                logs.failed.write({"id": item.id, "where": item.where, "error": scrub(str(error))[:500]})
                last_error = str(error)
            counts.translated += len(rows)
            counts.failed += len(failures)
            bar.update(len(batch))
            bar.set_postfix(ok=counts.translated, failed=counts.failed, bad=counts.skipped_bad_input, refresh=False)
            failed_in_a_row = failed_in_a_row + 1 if not rows else 0
            if failed_in_a_row >= cfg.max_failed_batches:
                raise TranslatorError(
                    f"translation stopped: {failed_in_a_row} batches in a row failed entirely "
                    f"(last error: {last_error[:200]}); rows written so far are kept, rerun to resume"
                )
    return "complete"


class _RunLogs:
    """This run's bad inputs and failed items, one JSON row each (rewritten per run: failures are retried)."""

    def __init__(self, out: Path):
        for name in ("bad_input.jsonl", "failed.jsonl"):
            (out / name).unlink(missing_ok=True)
        self.out = out
        self.bad = JsonlAppender(out / "bad_input.jsonl")
        self.failed = JsonlAppender(out / "failed.jsonl")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bad.close()
        self.failed.close()


def _todo(items: Iterator, cfg: DictConfig, done: set, counts: Counts, logs: _RunLogs, bar) -> Iterator[SourceItem]:
    """Items still to translate: bad input skipped (or stopping the run), finished and repeated ids passed over."""
    in_flight: set[str] = set()
    for entry in items:
        if cfg.limit is not None and counts.read >= cfg.limit:
            return
        counts.read += 1
        if isinstance(entry, DataError):
            if cfg.on_bad_input == "stop":
                raise entry
            counts.skipped_bad_input += 1
            logs.bad.write({"where": f"{entry.path}:{entry.line}" if entry.line else entry.path, "error": str(entry)})
            if len(counts.bad_examples) < BAD_EXAMPLES_IN_REPORT:
                counts.bad_examples.append(str(entry))
            bar.update(1)
            continue
        if len(entry.story) + len(entry.prompt or "") > cfg.max_story_chars:
            counts.skipped_too_long += 1  # one request per 4k characters would cost far more than a story should
            too_long = DataError(
                entry.where.rpartition(":")[0] or entry.where,
                f"{len(entry.story) + len(entry.prompt or '')} characters, over "
                f"max_story_chars={cfg.max_story_chars}; skipped",
                _line(entry.where),
            )
            logs.bad.write({"where": entry.where, "error": str(too_long)})
            if len(counts.bad_examples) < BAD_EXAMPLES_IN_REPORT:
                counts.bad_examples.append(str(too_long))
            bar.update(1)
            continue
        if entry.id in done:
            counts.already_done += 1
            bar.update(1)
            continue
        if entry.id in in_flight:
            counts.duplicate_ids += 1
            bar.update(1)
            continue
        in_flight.add(entry.id)
        yield entry


def _line(where: str) -> int | None:
    line = where.rpartition(":")[2]
    return int(line) if line.isdigit() else None


PARTIAL = "partial.jsonl"


class PartialAnswers:
    """Translations of single texts whose item failed as a whole (e.g. the prompt answered, the story not): kept in
    <out>/partial.jsonl so the next run sends only the texts that got no answer. Keyed by a hash of the text."""

    def __init__(self, path: Path):
        self.path = path
        self.known = (
            {
                row["h"]: row["ar"]
                for _, row in iter_jsonl(path, on_error="skip")
                if isinstance(row.get("h"), str) and isinstance(row.get("ar"), str)
            }
            if path.exists()
            else {}
        )
        self._writer = JsonlAppender(path) if self.known or path.exists() else None

    @staticmethod
    def key(text: str) -> str:
        return fingerprint(text)

    def get(self, text: str) -> str | None:
        return self.known.get(self.key(text))

    def add(self, text: str, arabic: str) -> None:
        key = self.key(text)
        if key not in self.known:
            self._writer = self._writer or JsonlAppender(self.path)
            self._writer.write({"h": key, "ar": arabic})
            self.known[key] = arabic

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._writer is not None:
            self._writer.close()


def _translate_batch(
    batch: list[SourceItem],
    translator: Translator,
    cfg: DictConfig,
    partial: PartialAnswers | None = None,
    counts: Counts | None = None,
):
    """Rows for the items whose texts all translated; (item, error) for the rest. Texts answered in an earlier
    run (partial.jsonl) are not sent again; answered texts of items that fail now are saved there."""
    partial = partial or PartialAnswers(Path(cfg.out) / PARTIAL)
    texts = [t for item in batch for t in ((item.prompt, item.story) if item.prompt is not None else (item.story,))]
    unique = list(dict.fromkeys(texts))
    reused = {t: known for t in unique if (known := partial.get(t)) is not None}
    to_send = [t for t in unique if t not in reused]
    answers = dict(zip(to_send, translator.translate(to_send), strict=False)) if to_send else {}
    answers.update(reused)
    if counts is not None:
        counts.reused_partial += len(reused)
    rows, failures = [], []
    for item in batch:
        story = answers[item.story]
        prompt = answers[item.prompt] if item.prompt is not None else cfg.story_only_prompt.ar
        error = next((r for r in (prompt, story) if isinstance(r, TranslationFailed)), None)
        if error is not None:
            for text, answer in ((item.prompt, prompt), (item.story, story)):
                if text is not None and isinstance(answer, str):
                    partial.add(text, answer)
            failures.append((item, error))
            continue
        assert isinstance(prompt, str) and isinstance(story, str)  # no TranslationFailed among them
        meta = {"source": item.where}
        if item.prompt is None:
            meta["prompt"] = "fixed"  # a story-only source gets the configured prompt pair, not a translation
        rows.append(
            ParallelRecord(
                id=item.id,
                en_prompt=item.prompt if item.prompt is not None else cfg.story_only_prompt.en,
                en_story=item.story,
                ar_prompt=prompt,
                ar_story=story,
                translator=translator.label,
                meta=meta,
            ).to_dict()
        )
    return rows, failures


def _check_manifest(out: Path, cfg: DictConfig, translator: Translator) -> None:
    """An output dir holds one source translated by one translator; a rerun must match it to resume."""
    manifest_path = out / "manifest.json"
    current = {"source": str(cfg.source), "split": cfg.split, "translator": translator.identity()}
    if cfg.get("shard"):
        current["shard"] = str(Shard.parse(cfg.shard))
    if manifest_path.exists():
        saved = read_manifest(manifest_path)
        if saved != current:
            raise ConfigError(
                "out",
                f"'{out}' holds translations of {saved.get('source')} by "
                f"{saved.get('translator', {}).get('label')}; use a new out= to translate "
                f"{current['source']} with {translator.label}",
            )
        return
    atomic_write_json(manifest_path, current)


def read_manifest(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DataError(path, "unreadable manifest; delete it to start this output dir afresh") from None


def _report(
    cfg: DictConfig, translator: Translator, counts: Counts, in_output: int, elapsed: float, status: str
) -> dict:
    usage = translator.usage()
    return {
        "status": status,
        "source": str(cfg.source),
        "split": cfg.split,
        "out": str(cfg.out),
        "translator": translator.identity(),
        "read": counts.read,
        "translated": counts.translated,
        "already_done": counts.already_done,
        "failed": counts.failed,
        "skipped_bad_input": counts.skipped_bad_input,
        "skipped_too_long": counts.skipped_too_long,
        "duplicate_ids": counts.duplicate_ids,
        "reused_partial_answers": counts.reused_partial,
        "trimmed_partial_row_bytes": counts.trimmed_bytes,
        "rows_in_output": in_output,
        "retries": usage.get("retries", 0),
        "usage": usage,
        "estimated_cost_usd": translator.estimated_cost(),
        "elapsed_s": round(elapsed, 3),
        "items_per_s": round(counts.translated / elapsed, 3) if elapsed > 0 else None,
        "bad_input_examples": counts.bad_examples,
        "files": {
            "parallel": "parallel.jsonl",
            "bad_input": "bad_input.jsonl",
            "failed": "failed.jsonl",
            "partial": PARTIAL,
        },
    }


def load_parallel(out: str | Path) -> list[ParallelRecord]:
    """The translated pairs of an output dir (for inspection and tests)."""
    return [ParallelRecord.from_dict(row) for row in read_jsonl(Path(out) / "parallel.jsonl")]
