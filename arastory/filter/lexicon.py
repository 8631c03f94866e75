"""Offline similarity from a bilingual lexicon: forward/backward word coverage and a length term, mapped to 0-1."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from arastory.errors import ConfigError, DataError
from arastory.io import file_fingerprint
from arastory.records import ParallelRecord
from arastory.text import normalize_arabic, normalize_for_hash

BUNDLED_LEXICON = Path(__file__).resolve().parent / "lexicon_en_ar.tsv"

# Function words carry no meaning a lexicon can check; everything else is a content word.
STOPWORDS = frozenset(
    """a an the and or but if so as of to in on at by for from with into onto over under about
than then there here this that these those it its he she they we i you me him her us them his hers their theirs our
ours my mine your yours who whom whose which what when where why how not no yes do does did done be is am are was
were been being have has had will would shall should can could may might must just also too very all any some each
every both either neither own same such only own oh ah s t don didn doesn isn wasn weren won wouldn couldn""".split()
)
IRREGULAR = {
    "went": "go",
    "gone": "go",
    "saw": "see",
    "seen": "see",
    "ran": "run",
    "came": "come",
    "took": "take",
    "taken": "take",
    "made": "make",
    "gave": "give",
    "given": "give",
    "found": "find",
    "felt": "feel",
    "got": "get",
    "said": "say",
    "told": "tell",
    "thought": "think",
    "knew": "know",
    "ate": "eat",
    "fell": "fall",
    "flew": "fly",
    "sat": "sit",
    "stood": "stand",
    "began": "begin",
    "brought": "bring",
    "bought": "buy",
    "children": "child",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
    "caught": "catch",
    "taught": "teach",
    "slept": "sleep",
    "swam": "swim",
    "sang": "sing",
    "drank": "drink",
    "wrote": "write",
    "woke": "wake",
    "left": "leave",
    "lost": "lose",
    "held": "hold",
    "heard": "hear",
    "met": "meet",
    "kept": "keep",
    "built": "build",
    "threw": "throw",
    "grew": "grow",
    "drew": "draw",
    "hid": "hide",
    "rode": "ride",
    "broke": "break",
    "wore": "wear",
    "best": "good",
    "better": "good",
    "bigger": "big",
    "biggest": "big",
}
_EN_WORD = re.compile(r"[a-z]+")
_AR_LETTERS = re.compile(r"[^\u0621-\u064A]")
_PREFIXES = ("وال", "فال", "بال", "كال", "ولل", "فلل", "لل", "ال", "و", "ف", "ب", "ل", "ك", "س")
_SUFFIXES = (
    "هما",
    "كما",
    "تما",
    "ها",
    "هم",
    "هن",
    "كم",
    "نا",
    "ات",
    "ون",
    "ين",
    "ان",
    "وا",
    "تم",
    "ه",
    "ك",
    "ي",
    "ت",
    "ا",
)
_VERB_PREFIXES = ("ي", "ت", "ن", "ا")
MIN_STEM = 3


@lru_cache(maxsize=200_000)
def english_lemmas(word: str) -> frozenset[str]:
    """The word and plausible base forms (plural, past, -ing, -ly, comparative, irregulars)."""
    forms = {word}
    if word in IRREGULAR:
        forms.add(IRREGULAR[word])
    for suffix, repl in (
        ("ies", "y"),
        ("ied", "y"),
        ("es", ""),
        ("s", ""),
        ("ed", ""),
        ("ed", "e"),
        ("d", ""),
        ("ing", ""),
        ("ing", "e"),
        ("ly", ""),
        ("ily", "y"),
        ("er", ""),
        ("est", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            base = word[: len(word) - len(suffix)] + repl
            forms.add(base)
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                forms.add(base[:-1])  # running -> runn -> run
    return frozenset(forms)


def english_content_words(text: str) -> list[str]:
    return [w for w in _EN_WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


@lru_cache(maxsize=200_000)
def arabic_stems(token: str) -> frozenset[str]:
    """A text token and its forms with the clitics و ف ب ل ك ال (and common suffixes) stripped."""
    token = _AR_LETTERS.sub("", normalize_arabic(token))
    if len(token) < 2:
        return frozenset()
    out = {token}
    bases = {token}
    for prefix in _PREFIXES:
        if token.startswith(prefix) and len(token) - len(prefix) >= MIN_STEM - 1:
            rest = token[len(prefix) :]
            bases.add(rest)
            for inner in ("ال", "ب", "ل", "ك"):  # وبال..., فلما -> two clitics
                if rest.startswith(inner) and len(rest) - len(inner) >= MIN_STEM:
                    bases.add(rest[len(inner) :])
    for base in bases:
        for form in _with_suffixes_removed(base):
            out.add(form)
            if form[:1] in _VERB_PREFIXES and len(form) > MIN_STEM:
                out.add(form[1:])
    return frozenset(f for f in out if len(f) >= MIN_STEM or f == token)


def _with_suffixes_removed(base: str) -> set[str]:
    forms = {base}
    for suffix in _SUFFIXES:
        if base.endswith(suffix) and len(base) - len(suffix) >= MIN_STEM:
            stem = base[: -len(suffix)]
            forms.add(stem)
            if stem.endswith("ت") and len(stem) > MIN_STEM:
                forms.add(stem[:-1] + "ه")  # حديقتها -> حديقت -> حديقه (teh marbuta, normalized)
    return forms


def entry_stems(form: str) -> set[str]:
    """Lexicon side: a base form, without the article, the imperfect prefix or a final ه (ة)."""
    form = _AR_LETTERS.sub("", normalize_arabic(form))
    stems = {form}
    if form.startswith("ال") and len(form) > 4:
        stems.add(form[2:])
    for stem in list(stems):
        if stem[:1] in _VERB_PREFIXES and len(stem) > MIN_STEM:
            stems.add(stem[1:])
    return {s for s in stems if len(s) >= 2}


class Lexicon:
    """English→Arabic lexicon (`english<TAB>ar1|ar2|...`) indexed both ways by stem."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError("encoder.lexicon", f"'{self.path}' does not exist (a TSV: english<TAB>arabic1|arabic2)")
        self.en_to_ar: dict[str, set[str]] = {}
        self.ar_to_en: dict[str, set[str]] = {}
        with open(self.path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                english, sep, arabic = line.rstrip("\n").partition("\t")
                if not sep or not english.strip() or not arabic.strip():
                    raise DataError(self.path, "expected english<TAB>arabic1|arabic2|...", lineno)
                english = english.strip().lower()
                for form in arabic.split("|"):
                    for stem in entry_stems(form.strip()):
                        self.en_to_ar.setdefault(english, set()).add(stem)
                        self.ar_to_en.setdefault(stem, set()).add(english)
        if not self.en_to_ar:
            raise DataError(self.path, "the lexicon has no entries")
        self.fingerprint = file_fingerprint(self.path)
        self._english_cache: dict[str, tuple[str, set[str]] | None] = {}

    def lookup_english(self, word: str) -> tuple[str, set[str]] | None:
        if word not in self._english_cache:
            self._english_cache[word] = next(
                (
                    (lemma, self.en_to_ar[lemma])
                    for lemma in (word, *sorted(english_lemmas(word) - {word}))
                    if lemma in self.en_to_ar
                ),
                None,
            )
        return self._english_cache[word]


@dataclass
class Coverage:
    forward: float  # share of the English content words (known to the lexicon) whose translation is present
    backward: float  # share of the Arabic words (known to the lexicon) whose English counterpart is present
    length: float  # 1 inside the expected Arabic/English word-ratio band, decaying outside
    raw: float  # the combination before calibration


class LexiconScorer:
    """Coverage of each side by the other through the lexicon; `similarity` maps it to 0-1 (the threshold's scale)."""

    def __init__(
        self,
        lexicon: Lexicon,
        length_band: tuple[float, float] = (0.6, 1.1),
        length_weight: float = 1.0,
        center: float = 0.57,
        scale: float = 0.05,
    ):
        self.lexicon = lexicon
        self.length_band, self.length_weight = tuple(length_band), length_weight
        self.center, self.scale = center, scale

    def coverage(self, english: str, arabic: str) -> Coverage:
        en_words = set(english_content_words(english))
        en_lemmas = set().union(*(english_lemmas(w) for w in en_words)) if en_words else set()
        ar_tokens = set(arabic.split())
        ar_stems = set().union(*(arabic_stems(t) for t in ar_tokens)) if ar_tokens else set()
        known = [hit for hit in (self.lexicon.lookup_english(w) for w in en_words) if hit]
        forward = sum(1 for _, stems in known if stems & ar_stems) / len(known) if known else 0.0
        matched = total = 0
        for token in ar_tokens:
            english_of = self._english_of(token)
            if english_of:
                total += 1
                matched += bool(english_of & en_lemmas)
        backward = matched / total if total else 0.0
        length = self._length_term(len(arabic.split()) / max(1, len(english.split())))
        both = 2 * forward * backward / (forward + backward) if forward + backward else 0.0
        return Coverage(forward, backward, length, both * length**self.length_weight)

    def _english_of(self, token: str) -> frozenset[str]:
        """English words the lexicon gives for an Arabic token (memoized: tokens repeat across a corpus)."""
        cache = self.__dict__.setdefault("_token_cache", {})
        if token not in cache:
            if len(cache) > 500_000:
                cache.clear()
            cache[token] = frozenset().union(*(self.lexicon.ar_to_en.get(s, ()) for s in arabic_stems(token)))
        return cache[token]

    def _length_term(self, ratio: float) -> float:
        low, high = self.length_band
        if ratio < low:
            return ratio / low
        if ratio > high:
            return high / ratio
        return 1.0

    def similarity(self, english: str, arabic: str) -> float:
        raw = self.coverage(english, arabic).raw
        return 1.0 / (1.0 + math.exp(-(raw - self.center) / self.scale))

    def score_pairs(self, pairs: list[ParallelRecord]) -> np.ndarray:
        return np.array(
            [self.similarity(f"{p.en_prompt}\n{p.en_story}", f"{p.ar_prompt}\n{p.ar_story}") for p in pairs],
            dtype=np.float32,
        )


def hashed_embeddings(texts: list[str], dim: int) -> np.ndarray:
    """L2-normalized hashed bag of words and word bigrams of the normalized text (for dedup and leakage)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(
        n_features=dim,
        alternate_sign=False,
        norm="l2",
        ngram_range=(1, 2),
        preprocessor=normalize_for_hash,
        token_pattern=r"(?u)\b\w+\b",
    )
    return vectorizer.transform(texts).toarray().astype(np.float32)
