"""Dialect marker words from published grammars (see ../shared/docs/paper.md), matched as whole words."""

from __future__ import annotations

from arastory.text import words

# Distinctive words per variety. Ambiguous ones (ليه, ماشي, اللي, حاجة) are deliberately left out.
MARKERS: dict[str, tuple[str, ...]] = {
    "egy": (
        "مش",
        "ده",
        "دي",
        "عشان",
        "علشان",
        "إزاي",
        "ازاي",
        "كده",
        "إيه",
        "ايه",
        "أوي",
        "اوي",
        "دلوقتي",
        "عايز",
        "عايزة",
        "بتاع",
        "بتاعة",
    ),
    "mor": (
        "هاد",
        "هادي",
        "بزاف",
        "ديال",
        "ديالو",
        "ديالها",
        "ديما",
        "باش",
        "غادي",
        "كيفاش",
        "واش",
        "دابا",
        "كاين",
        "كاينة",
        "ملي",
        "مزيان",
        "بغا",
        "بغات",
        "شنو",
    ),
    "msa": ("الذي", "التي", "ذلك", "عندما", "لقد", "سوف"),
}

# The published lists quoted in the study notes; used by tests that check the bundled corpus.
PUBLISHED_MARKERS: dict[str, tuple[str, ...]] = {
    "egy": ("مش", "ده", "دي", "عشان", "إزاي", "كده", "إيه", "أوي", "دلوقتي", "عايز"),
    "mor": ("هاد", "بزاف", "ديال", "ديما", "باش", "غادي", "كيفاش", "واش", "دابا", "كاين"),
    "msa": ("الذي", "التي", "ذلك", "عندما", "لقد"),
}


def markers_in(text: str, markers: dict[str, tuple[str, ...]] = MARKERS) -> dict[str, list[str]]:
    """The marker words of each variety that occur in `text` (whole-word, in order of first occurrence)."""
    tokens = words(text)
    found: dict[str, list[str]] = {}
    for variety, vocab in markers.items():
        vocab_set = set(vocab)
        seen: list[str] = []
        for token in tokens:
            if token in vocab_set and token not in seen:
                seen.append(token)
        found[variety] = seen
    return found
