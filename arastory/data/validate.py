"""Validate story and parallel records: schema, variety labels, Arabic-script share, duplicates, length bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

from arastory.records import VARIETIES, ParallelRecord, StoryRecord
from arastory.text import arabic_share, normalize_for_hash, word_count


@dataclass
class ValidationReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, record_id: str, message: str) -> None:
        self.problems.append(f"{record_id}: {message}")


def validate_stories(records: list[StoryRecord], varieties: tuple[str, ...] = VARIETIES, min_arabic: float = 0.95,
                     min_words: int = 1, max_words: int = 10_000, check_prompt_duplicates: bool = True) -> ValidationReport:
    report = ValidationReport(checked=len(records))
    seen_ids: set[str] = set()
    seen_story: dict[str, str] = {}
    seen_prompt: dict[str, str] = {}
    for record in records:
        if record.id in seen_ids:
            report.add(record.id, "duplicate id")
        seen_ids.add(record.id)
        if record.variety not in varieties:
            report.add(record.id, f"variety '{record.variety}' not one of {', '.join(varieties)}")
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


def validate_parallel(records: list[ParallelRecord], min_en_words: int = 1, max_en_words: int = 10_000) -> ValidationReport:
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
