"""Quality gates for generated stories: empty, length, refusal/meta text, script, variety, duplicates, near-duplicates.

Each story is rejected by the first gate it fails (in GATES order), so the per-gate counts add up to the
rejected total. Duplicate gates come last and only index stories that passed every other gate, so a
rejected story never blocks a later good one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from arastory.errors import ConfigError
from arastory.text import arabic_share, normalize_for_hash, word_count

GATES = ("empty", "refusal", "too_short", "too_long", "non_arabic", "wrong_variety", "duplicate", "near_duplicate")

# Refusals and meta text (English and Arabic, matched after normalization) — ours; extend with gates.refusal_patterns.
DEFAULT_REFUSALS = (
    "as an ai",
    "as a language model",
    "i'm sorry",
    "i am sorry",
    "i cannot",
    "i can't",
    "i'm unable",
    "here is the story",
    "here's the story",
    "here is a story",
    "here's a story",
    "sure, here",
    "عذراً، لا أستطيع",
    "عذرا لا يمكنني",
    "آسف، لا أستطيع",
    "لا أستطيع كتابة",
    "لا يمكنني كتابة",
    "بصفتي نموذج",
    "كنموذج لغوي",
    "كذكاء اصطناعي",
    "بصفتي ذكاء اصطناعي",
    "إليك القصة",
    "إليك قصة",
    "إليكم القصة",
    "ها هي القصة",
    "هذه هي القصة",
    "بالتأكيد! إليك",
    "بالطبع! إليك",
    "هاهي القصة",
    "آمل أن تكون القصة",
    "أتمنى أن تكون القصة قد",
    "هل تريد قصة أخرى",
    "هل ترغب في قصة",
)


@dataclass
class GateResult:
    reason: str | None  # the first gate failed, None when kept
    detail: str = ""
    checks: dict = field(default_factory=dict)  # words, arabic_share, dialect analysis, duplicate_of

    @property
    def kept(self) -> bool:
        return self.reason is None


class NearDuplicateIndex:
    """MinHash over character shingles with LSH banding; candidates are confirmed by exact Jaccard similarity."""

    PRIME = (1 << 31) - 1

    def __init__(
        self, threshold: float = 0.8, shingle_size: int = 5, num_perm: int = 64, bands: int = 16, seed: int = 0
    ):
        if num_perm % bands:
            raise ConfigError("gates.minhash_bands", f"must divide gates.minhash_perm ({num_perm}), got {bands}")
        self.threshold, self.shingle_size, self.bands = threshold, shingle_size, bands
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, self.PRIME, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, self.PRIME, size=num_perm, dtype=np.uint64)
        self.buckets: dict[tuple, list[str]] = {}
        self.shingle_sets: dict[str, set[int]] = {}

    def shingles(self, text: str) -> set[int]:
        norm = normalize_for_hash(text)
        k = self.shingle_size
        grams = [norm[i : i + k] for i in range(max(1, len(norm) - k + 1))]
        return {zlib.crc32(g.encode()) for g in grams}

    def _signature(self, shingles: set[int]) -> np.ndarray:
        x = np.fromiter(shingles, dtype=np.uint64, count=len(shingles))
        # a < 2^31 and x < 2^32, so a*x + b stays below 2^64.
        return ((np.outer(self.a, x) + self.b[:, None]) % self.PRIME).min(axis=1)

    def _band_keys(self, signature: np.ndarray) -> list[tuple]:
        rows = len(signature) // self.bands
        return [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(self.bands)]

    def match(self, text: str) -> tuple[str | None, float, set[int], list[tuple]]:
        """The most similar indexed story at or above the threshold (id, similarity), plus what `add` needs."""
        shingles = self.shingles(text)
        keys = self._band_keys(self._signature(shingles))
        candidates = {doc for key in keys for doc in self.buckets.get(key, ())}
        best, best_sim = None, 0.0
        for doc in sorted(candidates):
            other = self.shingle_sets[doc]
            sim = len(shingles & other) / len(shingles | other)
            if sim > best_sim:
                best, best_sim = doc, sim
        if best_sim >= self.threshold:
            return best, best_sim, shingles, keys
        return None, best_sim, shingles, keys

    def add(self, doc_id: str, shingles: set[int], keys: list[tuple]) -> None:
        self.shingle_sets[doc_id] = shingles
        for key in keys:
            self.buckets.setdefault(key, []).append(doc_id)


class QualityGates:
    """Checks one story at a time (in a fixed order, so results do not depend on which answer came back first)."""

    def __init__(
        self,
        min_words: int = 100,
        max_words: int = 600,
        refusal_patterns: list[str] | None = None,
        scan_chars: int = 300,
        min_arabic_share: float = 0.9,
        check_variety: bool = True,
        min_target_prob: float | dict | None = None,
        min_target_share: float | None = None,
        near_duplicate_jaccard: float = 0.8,
        shingle_size: int = 5,
        minhash_perm: int = 64,
        minhash_bands: int = 16,
        identifier=None,
    ):
        if min_words > max_words:
            raise ConfigError("gates.min_words", f"{min_words} is above gates.max_words ({max_words})")
        probs = min_target_prob.items() if isinstance(min_target_prob, dict) else [("", min_target_prob)]
        for key, value in (
            ("min_arabic_share", min_arabic_share),
            ("min_target_share", min_target_share),
            ("near_duplicate_jaccard", near_duplicate_jaccard),
            *((f"min_target_prob{'.' + k if k else ''}", v) for k, v in probs),
        ):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"gates.{key}", f"must be in [0, 1], got {value}")
        self.min_words, self.max_words, self.scan_chars = min_words, max_words, scan_chars
        self.min_arabic_share, self.min_target_share = min_arabic_share, min_target_share
        self.min_target_prob = min_target_prob
        self.check_variety, self.identifier = check_variety, identifier
        patterns = list(DEFAULT_REFUSALS) + list(refusal_patterns or [])
        self.refusals = sorted({normalize_for_hash(p) for p in patterns if normalize_for_hash(p)})
        self.exact: dict[str, str] = {}
        self.near = NearDuplicateIndex(near_duplicate_jaccard, shingle_size, minhash_perm, minhash_bands)

    def refusal(self, story: str) -> str | None:
        """A refusal or meta pattern found at the start or end of the story (where models put them)."""
        windows = normalize_for_hash(story[: self.scan_chars]) + " | " + normalize_for_hash(story[-self.scan_chars :])
        padded = f" {windows} "
        return next((p for p in self.refusals if f" {p} " in padded), None)

    def check(self, story_id: str, story: str, target: str) -> GateResult:
        story = (story or "").strip()
        checks: dict = {"words": word_count(story)}
        if not story:
            return GateResult("empty", "no text", checks)
        pattern = self.refusal(story)  # before length: refusals are short, and this says why
        if pattern:
            return GateResult("refusal", f"refusal or meta text: '{pattern}'", checks)
        if checks["words"] < self.min_words:
            return GateResult("too_short", f"{checks['words']} words < {self.min_words}", checks)
        if checks["words"] > self.max_words:
            return GateResult("too_long", f"{checks['words']} words > {self.max_words}", checks)
        checks["arabic_share"] = round(arabic_share(story), 4)
        if checks["arabic_share"] < self.min_arabic_share:
            return GateResult(
                "non_arabic", f"Arabic script share {checks['arabic_share']} < {self.min_arabic_share}", checks
            )
        if self.check_variety and self.identifier is not None:
            failed = self._variety(story, target, checks)
            if failed:
                return failed
        return self._duplicates(story_id, story, checks)

    def threshold(self, target: str) -> float:
        """The P(target) a story needs: gates.min_target_prob (one value or per variety), else the identifier's own
        cross-validated threshold (dialect_id.thresholds), else 0.5."""
        from arastory.dialect.thresholds import gate_threshold

        return gate_threshold(self.identifier, target, self.min_target_prob)

    def _variety(self, story: str, target: str, checks: dict) -> GateResult | None:
        analysis = self.identifier.analyze(story, target)
        probability, threshold = float(analysis.probabilities.get(target, 0.0)), self.threshold(target)
        checks["dialect"] = {
            "predicted": analysis.predicted,
            "probabilities": analysis.probabilities,
            "target_prob": round(probability, 4),
            "threshold": threshold,
            "target_share": round(analysis.dialect_share, 4),
            "msa_share": round(getattr(analysis, "msa_share", 0.0), 4),
            "markers": analysis.markers,
        }
        if probability < threshold:
            return GateResult(
                "wrong_variety",
                f"P({target}) {probability:.2f} < {threshold:.2f} (classified as {analysis.predicted})",
                checks,
            )
        if self.min_target_share is not None and analysis.dialect_share < self.min_target_share:
            return GateResult(
                "wrong_variety",
                f"only {analysis.dialect_share:.2f} of sentences in {target} (< {self.min_target_share})",
                checks,
            )
        return None

    def _duplicates(self, story_id: str, story: str, checks: dict) -> GateResult:
        key = normalize_for_hash(story)
        if key in self.exact:
            checks["duplicate_of"] = self.exact[key]
            return GateResult("duplicate", f"same text as {self.exact[key]}", checks)
        match, similarity, shingles, keys = self.near.match(story)
        if match is not None:
            checks["duplicate_of"], checks["jaccard"] = match, round(similarity, 4)
            return GateResult("near_duplicate", f"Jaccard {similarity:.2f} with {match}", checks)
        self.exact[key] = story_id
        self.near.add(story_id, shingles, keys)
        return GateResult(None, "", checks)
