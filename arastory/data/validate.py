"""Validate story and parallel records: schema, variety labels, Arabic-script share, duplicates, length bounds."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from arastory.records import VARIETIES, ParallelRecord, StoryRecord
from arastory.text import arabic_share, normalize_for_hash, word_count

if TYPE_CHECKING:
    from arastory.dialect.identify import DialectIdentifier


@dataclass
class ValidationReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, record_id: str, message: str) -> None:
        self.problems.append(f"{record_id}: {message}")


def validate_stories(
    records: list[StoryRecord],
    varieties: tuple[str, ...] = VARIETIES,
    min_arabic: float = 0.95,
    min_words: int = 1,
    max_words: int = 10_000,
    check_prompt_duplicates: bool = True,
) -> ValidationReport:
    report = ValidationReport(checked=len(records))
    seen_ids: set[str] = set()
    seen_story: dict[str, str] = {}
    seen_prompt: dict[str, str] = {}
    for record in records:
        if record.id in seen_ids:
            report.add(record.id, "duplicate id")
        seen_ids.add(record.id)
        if record.variety not in varieties:
            report.add(record.id, f"variety '{record.variety}' not one of: {', '.join(varieties)}")
        for name in ("prompt", "story"):
            text = getattr(record, name)
            if not isinstance(text, str) or not text.strip():
                report.add(record.id, f"empty {name}")
                continue
            share = arabic_share(text)
            if share < min_arabic:
                report.add(record.id, f"{name} is {share:.0%} Arabic script (< {min_arabic:.0%})")
        n_words = word_count(record.story)
        if not min_words <= n_words <= max_words:
            report.add(record.id, f"story has {n_words} words (allowed {min_words}-{max_words})")
        _check_duplicate(report, record.id, normalize_for_hash(record.story), seen_story, "story")
        if check_prompt_duplicates:
            _check_duplicate(report, record.id, normalize_for_hash(record.prompt), seen_prompt, "prompt")
    return report


def validate_parallel(
    records: list[ParallelRecord], min_en_words: int = 1, max_en_words: int = 10_000
) -> ValidationReport:
    report = ValidationReport(checked=len(records))
    seen_ids: set[str] = set()
    seen_story: dict[str, str] = {}
    for record in records:
        if record.id in seen_ids:
            report.add(record.id, "duplicate id")
        seen_ids.add(record.id)
        n_words = word_count(record.en_story)
        if not min_en_words <= n_words <= max_en_words:
            report.add(record.id, f"English story has {n_words} words (allowed {min_en_words}-{max_en_words})")
        if record.flaw is None:
            for name in ("ar_prompt", "ar_story"):
                share = arabic_share(getattr(record, name))
                if share < 0.95:
                    report.add(record.id, f"faithful {name} is {share:.0%} Arabic script")
        _check_duplicate(report, record.id, normalize_for_hash(record.en_story), seen_story, "English story")
    return report


def _check_duplicate(report: ValidationReport, record_id: str, key: str, seen: dict[str, str], what: str) -> None:
    if key in seen:
        report.add(record_id, f"duplicate {what} of {seen[key]}")
    else:
        seen[key] = record_id


# What spreadsheets and dataframes write for a missing cell; never a story or a prompt.
PLACEHOLDERS = frozenset({"", "nan", "none", "null", "n/a", "na", "<na>", "nat", "undefined", "-"})
MIN_ARABIC_SHARE = 0.9  # ours: the synthesis gate's bound; the released stories are all >= 0.97
MIN_LABEL_AGREEMENT = 0.5  # ours: share of a dialect file's stories the identifier must read as that dialect
LABEL_SAMPLE = 200  # ours: stories per dialect the identifier reads for that check (seeded sample)


def is_placeholder(text: object) -> bool:
    return not isinstance(text, str) or text.strip().lower() in PLACEHOLDERS


@dataclass
class Screened:
    """User records split into those fit to use and those skipped, each skip with its reason."""

    kept: list
    skipped: list[str] = field(default_factory=list)  # "<id>: <reason>"


def screen_stories(
    records: Iterable[StoryRecord],
    varieties: tuple[str, ...] = VARIETIES,
    min_arabic: float = MIN_ARABIC_SHARE,
    max_words: int = 10_000,
    keep: Callable[[StoryRecord], object] | None = None,
) -> Screened:
    """Skip records a model must not train on: unknown variety, empty/NaN/None text, too little Arabic script,
    too long, a repeated id or story (the first one is kept). `records` may be a stream; `keep` maps each kept one."""
    seen_ids: set[str] = set()
    seen_story: dict[bytes, str] = {}  # a digest of each normalized story, not the story: a stream stays small

    def problem(record: StoryRecord) -> str | None:
        found = _story_problem(record, varieties, min_arabic, max_words)
        if found is None and record.id in seen_ids:
            return "duplicate id"
        if found is None:
            key = hashlib.blake2b(normalize_for_hash(record.story).encode(), digest_size=16).digest()
            found = f"duplicate story of {seen_story[key]}" if key in seen_story else None
            seen_story.setdefault(key, record.id)
        if found is None:
            seen_ids.add(record.id)
        return found

    return _screen(records, problem, keep)


def _screen(records: Iterable, problem, keep=None) -> Screened:
    """Records split by `problem(record)`: None keeps it (as `keep(record)` when given), a reason skips it."""
    out = Screened(kept=[])
    for record in records:
        reason = problem(record)
        if reason:
            out.skipped.append(f"{record.id}: {reason}")
        else:
            out.kept.append(keep(record) if keep else record)
    return out


def _story_problem(record: StoryRecord, varieties, min_arabic: float, max_words: int) -> str | None:
    if is_placeholder(record.id):
        return "empty id"
    if record.variety not in varieties:
        return f"variety '{record.variety}' is not one of: {', '.join(varieties)}"
    if not is_placeholder(record.story) and word_count(record.story) > max_words:  # before the costlier checks
        return f"story has {word_count(record.story)} words (> {max_words})"
    for name in ("prompt", "story"):
        text = getattr(record, name)
        if is_placeholder(text):
            return f"empty {name} (or a placeholder such as NaN/None)"
        share = arabic_share(text)
        if share < min_arabic:
            return f"{name} is {share:.0%} Arabic script (< {min_arabic:.0%}): not {record.variety} text"
    return None


def screen_pairs(
    records: Iterable[ParallelRecord],
    min_arabic: float = MIN_ARABIC_SHARE,
    max_words: int = 10_000,
    keep: Callable[[ParallelRecord], object] | None = None,
) -> Screened:
    """Skip translated pairs with an empty/NaN/None side, an Arabic side that is not Arabic script, or a repeated id
    (the filter, when enabled, judges the rest). `records` may be a stream; `keep` maps each kept pair."""
    seen: set[str] = set()

    def problem(record: ParallelRecord) -> str | None:
        empty = [
            k for k in ("id", "en_prompt", "en_story", "ar_prompt", "ar_story") if is_placeholder(getattr(record, k))
        ]
        if empty:
            return f"empty {', '.join(empty)}"
        if record.id in seen:
            return "duplicate id"
        if max(word_count(record.en_story), word_count(record.ar_story)) > max_words:
            return f"a side has more than {max_words} words"
        if arabic_share(record.ar_story) < min_arabic or arabic_share(record.ar_prompt) < 0.5:
            return f"the Arabic side is not Arabic script (< {min_arabic:.0%} of the story's letters)"
        seen.add(record.id)
        return None

    return _screen(records, problem, keep)


def label_disagreement(
    records: list[StoryRecord],
    identifier: DialectIdentifier,
    min_agreement: float = MIN_LABEL_AGREEMENT,
    sample: int = LABEL_SAMPLE,
    seed: int = 0,
) -> str | None:
    """A one-line finding when the stories labelled with a dialect mostly do not read as that dialect to the
    dialect identifier (a wrong label or MSA text), else None. MSA-labelled text is left to the script check."""
    import random
    from collections import Counter

    known = set(getattr(identifier, "classes", []) or [])
    for variety in sorted({r.variety for r in records} - {"msa"}):
        if known and variety not in known:
            continue
        group = [r for r in records if r.variety == variety]
        chosen = random.Random(seed).sample(group, min(sample, len(group)))
        predicted = Counter(identifier.analyze(r.story, variety).predicted for r in chosen)
        agreement = predicted[variety] / len(chosen)
        if agreement < min_agreement:
            other, count = max(((v, n) for v, n in predicted.items() if v != variety), key=lambda x: x[1])
            return (
                f"{len(group)} stories are labelled {variety}, but the dialect identifier reads {count} of the "
                f"{len(chosen)} it checked as {other} (only {agreement:.0%} as {variety}): a wrong label?"
            )
    return None


def prompt_row_problem(row: dict, varieties: tuple[str, ...] = VARIETIES) -> str | None:
    """Why a saved evaluation prompt (id, variety, prompt) cannot be used, or None (evaluate's `prompts=` reader)."""
    missing = [k for k in ("id", "variety", "prompt") if is_placeholder(row.get(k))]
    if missing:
        return f"missing {', '.join(missing)} (or a placeholder such as NaN/None)"
    if row["variety"] not in varieties:
        return f"variety '{row['variety']}' is not one of: {', '.join(varieties)}"
    return None
