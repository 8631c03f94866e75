"""Detect which of the 12 features a prompt from the study's released CSVs carries, from its template sentences.

The released prompts use the study's own wording (one fixed sentence per feature and variety), so a
feature is present when its sentence's opening words are. Used to compare our sampler with the release.
"""

from __future__ import annotations

from collections import Counter

# Opening words of each optional feature's sentence in the released prompts (read from the CSVs).
RELEASED_CUES: dict[str, dict[str, str]] = {
    "msa": {
        "place": "أحداث القصة يجب أن",
        "dialogue": "يجب أن يكون هناك حوار",
        "moral": "الدرس المستفاد",
        "topic": "موضوع القصة",
        "season": "الأحداث تدور في فصل",
        "activity": "النشاط",
        "emotion": "يجب أن تحتوي القصة",
        "plot_twist": "أضف تحولا غير متوقع",
    },
    "egy": {
        "place": "أحداث الحكاية المفروض",
        "dialogue": "لازم يكون في حوار",
        "moral": "الدرس المستفاد",
        "topic": "الموضوع بتاع",
        "season": "الأحداث بتدور في الفصل",
        "activity": "النشاط",
        "emotion": "الحكاية المفروض يكون فيها",
        "plot_twist": "زود تحول",
    },
    "mor": {
        "place": "لازم الأحداث ديال القصة",
        "dialogue": "لازم يكون شي حوار",
        "moral": "الدرس اللي نتعلموه",
        "topic": "الموضوع ديال القصة",
        "season": "الأحداث كاينة في الفصل",
        "activity": "النشاط",
        "emotion": "لازم القصة تكون فيها",
        "plot_twist": "زيد شي تحول",
    },
}
ALWAYS_PRESENT = ("age", "ending", "n_characters", "country")


def released_features(prompt: str, variety: str) -> list[str]:
    """The features a released prompt carries: the four always-present ones plus each optional one whose cue occurs."""
    cues = RELEASED_CUES[variety]
    return list(ALWAYS_PRESENT) + [feature for feature, cue in cues.items() if cue in prompt]


def feature_rates(feature_lists: list[list[str]], features: list[str]) -> dict[str, float]:
    """Share of prompts carrying each feature."""
    n = len(feature_lists) or 1
    return {f: sum(f in fl for fl in feature_lists) / n for f in features}


def count_distribution(feature_lists: list[list[str]]) -> dict[int, float]:
    """Distribution of the number of features per prompt."""
    counts = Counter(len(fl) for fl in feature_lists)
    n = sum(counts.values()) or 1
    return {k: counts[k] / n for k in sorted(counts)}


def total_variation(p: dict, q: dict) -> float:
    """Total-variation distance between two discrete distributions given as {value: probability}."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))
