"""Arabic text helpers: script share, normalization for hashing, word and sentence splitting."""

import re
import unicodedata

_ARABIC = re.compile(r"[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF]")
_LATIN = re.compile(r"[A-Za-z]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_DIACRITICS = re.compile(r"[\u064B-\u0652\u0670\u0640]")  # harakat, dagger alif, tatweel
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?؟\n])\s+")


def arabic_share(text: str) -> float:
    """Share of letters that are Arabic script (0 when the text has no letters)."""
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _ARABIC.match(ch)) / len(letters)


def latin_share(text: str) -> float:
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _LATIN.match(ch)) / len(letters)


def normalize_arabic(text: str) -> str:
    """Normalize for matching and hashing: NFKC, no diacritics or tatweel, unified alef/yeh/teh marbuta."""
    text = unicodedata.normalize("NFKC", text)
    text = _DIACRITICS.sub("", text)
    text = re.sub("[إأآٱ]", "ا", text)
    text = text.replace("ى", "ي").replace("ة", "ه")
    return text


def normalize_for_hash(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for exact-duplicate detection."""
    text = normalize_arabic(text).lower()
    text = _PUNCT.sub(" ", text)
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation stripped (for marker matching and counts)."""
    out = []
    for token in text.split():
        token = token.strip("\"'«»“”.,،;؛:!?؟()[]{}-–—…")
        if token:
            out.append(token)
    return out


def word_count(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> list[str]:
    """Split into sentences at . ! ? ؟ and line breaks; keeps the end punctuation."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
