"""Cheap per-pair checks run before any scoring: empty, untranslated English, Arabic-script share, length ratio,
repetition, wrong variety."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from arastory.dialect.markers import MARKERS
from arastory.records import ParallelRecord
from arastory.text import arabic_share, normalize_for_hash, sentences, words

# Reason codes stored per pair (uint8); 0 = passed. Check names are in the order they are tried.
CHECKS = ("empty", "untranslated", "arabic_share", "length_ratio", "repetition", "wrong_variety")
DECISIONS = ("below_threshold", "duplicate", "near_duplicate", "leakage")
REASONS = ("ok", *CHECKS, *DECISIONS)
CODE = {name: code for code, name in enumerate(REASONS)}

_LATIN_WORD = re.compile(r"[A-Za-z']+")


@dataclass
class CheckSettings:
    """Bounds of the cheap checks (all ours: set on the bundled parallel set, see docs/filter.md)."""

    enabled: list[str] = field(default_factory=lambda: list(CHECKS))
    min_arabic_share: float = 0.9  # Arabic letters / all letters in the Arabic story
    min_arabic_share_prompt: float = 0.5  # prompts may keep a quoted English word
    max_copied_english: float = 0.05  # share of the English story's word trigrams found verbatim in the Arabic side
    min_length_ratio: float = 0.45  # Arabic words / English words (faithful MSA: 0.68-0.89 on the bundled set)
    max_length_ratio: float = 1.6
    max_repeated_sentences: float = 0.3  # share of sentences that repeat an earlier one
    max_repeated_ngrams: float = 0.2  # share of word 4-grams that repeat an earlier one
    target_variety: str = "msa"
    min_dialect_markers: int = 1  # distinct markers of another variety that mark the story as dialect
    possessive_stems: list[str] = field(default_factory=lambda: ["بتاع", "ديال"])  # carry pronoun suffixes

    def __post_init__(self):
        unknown = [c for c in self.enabled if c not in CHECKS]
        if unknown:
            from arastory.errors import ConfigError

            raise ConfigError("filter.checks.enabled", f"'{unknown[0]}' is not one of: {', '.join(CHECKS)}")

    def as_key(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def failed_checks(pair: ParallelRecord, settings: CheckSettings) -> list[str]:
    """Names of the checks this pair fails, in check order (empty list = passes)."""
    failed = []
    for name in settings.enabled:
        if _CHECK_FUNCTIONS[name](pair, settings):
            failed.append(name)
            if name == "empty":
                break  # nothing else is meaningful on an empty side
    return failed


def _empty(pair, s) -> bool:
    return not all(str(getattr(pair, k) or "").strip() for k in ("en_prompt", "en_story", "ar_prompt", "ar_story"))


def _untranslated(pair, s) -> bool:
    english = [w.lower() for w in _LATIN_WORD.findall(pair.en_story)]
    grams = {tuple(english[i : i + 3]) for i in range(len(english) - 2)}
    if not grams:
        return False
    arabic_side = [w.lower() for w in _LATIN_WORD.findall(pair.ar_prompt + " " + pair.ar_story)]
    copied = {tuple(arabic_side[i : i + 3]) for i in range(len(arabic_side) - 2)} & grams
    return len(copied) / len(grams) > s.max_copied_english


def _arabic_share(pair, s) -> bool:
    return arabic_share(pair.ar_story) < s.min_arabic_share or arabic_share(pair.ar_prompt) < s.min_arabic_share_prompt


def _length_ratio(pair, s) -> bool:
    ratio = len(words(pair.ar_story)) / max(1, len(words(pair.en_story)))
    return not s.min_length_ratio <= ratio <= s.max_length_ratio


def repeated_share(items: list) -> float:
    return 1 - len(set(items)) / len(items) if items else 0.0


def _repetition(pair, s) -> bool:
    said = [normalize_for_hash(x) for x in sentences(pair.ar_story)]
    tokens = normalize_for_hash(pair.ar_story).split()
    grams = [tuple(tokens[i : i + 4]) for i in range(len(tokens) - 3)]
    return repeated_share(said) > s.max_repeated_sentences or repeated_share(grams) > s.max_repeated_ngrams


def dialect_markers(text: str, target: str, possessive_stems: Iterable[str]) -> set[str]:
    """Distinct marker words of varieties other than `target` (a leading و/ف conjunction is ignored)."""
    other = {m for v, vocab in MARKERS.items() if v != target for m in vocab}
    found = set()
    for token in words(text):
        for form in (token, token[1:] if token[:1] in "وف" and len(token) > 2 else None):
            if form and (form in other or any(form.startswith(p) for p in possessive_stems)):
                found.add(form)
    return found


def _wrong_variety(pair, s) -> bool:
    stems = s.possessive_stems if s.target_variety == "msa" else []
    return len(dialect_markers(pair.ar_story, s.target_variety, stems)) >= s.min_dialect_markers


_CHECK_FUNCTIONS = {
    "empty": _empty,
    "untranslated": _untranslated,
    "arabic_share": _arabic_share,
    "length_ratio": _length_ratio,
    "repetition": _repetition,
    "wrong_variety": _wrong_variety,
}


def text_hash(text: str) -> int:
    """64-bit hash of the normalized text (exact-duplicate key); 0 for empty text."""
    norm = normalize_for_hash(text or "")
    if not norm:
        return 0
    return int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=8).digest(), "little") or 1


def check_chunk(pairs: list[ParallelRecord], settings: CheckSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first failed check's code, bitmask of all failed checks, [en story, ar story, ar prompt] hashes) per pair."""
    codes = np.zeros(len(pairs), dtype=np.uint8)
    masks = np.zeros(len(pairs), dtype=np.uint8)
    hashes = np.zeros((len(pairs), 3), dtype=np.uint64)
    for i, pair in enumerate(pairs):
        failed = failed_checks(pair, settings)
        codes[i] = CODE[failed[0]] if failed else 0
        masks[i] = sum(1 << CHECKS.index(name) for name in failed)
        hashes[i] = (text_hash(pair.en_story), text_hash(pair.ar_story), text_hash(pair.ar_prompt))
    return codes, masks, hashes


def checks_in_mask(mask: int) -> list[str]:
    return [name for k, name in enumerate(CHECKS) if mask >> k & 1]
