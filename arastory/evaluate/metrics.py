"""Automatic story metrics: dialect fidelity, length, script share, checkable prompt features, diversity."""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from arastory.dialect.markers import markers_in
from arastory.prompts import load_variety
from arastory.text import arabic_share, normalize_arabic, sentences, word_count, words

if TYPE_CHECKING:
    from arastory.dialect.identify import DialectIdentifier

# Other names and demonym stems a story may use for a country (ours; matched after normalize_arabic).
# Bare "القمر" (also "the moon") is left out of the Comoros on purpose. Known ambiguities: عمان is also Amman, and
# المغرب is also the sunset prayer, so a Jordanian story naming Amman counts as naming Oman.
COUNTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "algeria": ("الجزائر", "جزائري"),
    "bahrain": ("البحرين", "بحريني"),
    "comoros": ("جزر القمر", "جمهورية القمر", "قمري"),
    "djibouti": ("جيبوتي", "جيبوتيا"),
    "egypt": ("مصر", "مصري", "ام الدنيا"),
    "iraq": ("العراق", "عراقي"),
    "jordan": ("الاردن", "اردني"),
    "kuwait": ("الكويت", "كويتي"),
    "lebanon": ("لبنان", "لبناني"),
    "libya": ("ليبيا", "ليبي"),
    "mauritania": ("موريتانيا", "موريتانيه", "موريتاني"),
    "morocco": ("المغرب", "مغربي", "المملكه المغربيه"),
    "oman": ("عمان", "عماني", "سلطنه عمان"),
    "palestine": ("فلسطين", "فلسطيني"),
    "qatar": ("قطر", "قطري"),
    "saudi_arabia": ("السعوديه", "سعودي", "المملكه العربيه السعوديه"),
    "somalia": ("الصومال", "صومالي"),
    "sudan": ("السودان", "سوداني"),
    "syria": ("سوريا", "سوريه", "سوري"),
    "tunisia": ("تونس", "تونسي"),
    "uae": ("الامارات", "اماراتي", "دوله الامارات"),
    "yemen": ("اليمن",),  # no demonym: يمني is also اليمنى, "the right (hand)"
}

# Season words beyond the localized value: dialect spellings and adjectives (ours).
SEASON_ALIASES: dict[str, tuple[str, ...]] = {
    "spring": ("الربيع", "ربيعي"),
    "summer": ("الصيف", "صيفي", "الصيفيه"),
    "autumn": ("الخريف", "خريفي"),
    "winter": ("الشتاء", "الشتا", "شتوي", "الشتويه"),
}

# Place words beyond the localized values of every variety: synonyms and dialect words (ours).
PLACE_ALIASES: dict[str, tuple[str, ...]] = {
    "home": ("المنزل", "البيت", "الدار"),
    "hospital": ("المستشفى", "السبيطار"),
    "park": ("الحديقه", "الجنينه", "البارك"),
    "beach": ("الشط", "البلاج", "البحر"),
    "castle": ("القصر",),
    "cave": ("المغاره",),
    "desert": ("الصحرا",),
    "farm": ("الضيعه", "الفيرمه", "العزبه", "الغيط"),
    "rainforest": ("الغابه",),
    "big_city": ("المدينه",),
    "outer_space": ("الفضاء", "الفضا"),
    "space_station": ("محطه فضاء", "محطه الفضا"),
    "science_lab": ("المختبر", "المعمل"),
    "train_station": ("المحطه",),
    "mountains": ("الجبل",),
    "ocean": ("البحر",),
    "amusement_park": ("الملاهي",),
    "zoo": ("جنينه الحيوانات",),
}

_CLITICS = "(?:[وف]?[بكلف]?)"  # conjunction + preposition: وبمصر، Darija فمصر (ف = "in")
_ARTICLE = "(?:[وف]?[بكف]?ال|[وف]?لل)"  # the article with its prefixes: بال، وفال، لل (ل + ال)
_PRONOUNS = "(?:ه|ها|هم|هن|هما|نا|ي|ك|كم|كي|و)?"  # possessive suffixes: بيتهم، دارنا
_DEMONYM_ENDINGS = "(?:ه|ين|ون|ات)?"  # مصري → مصريه، مصريين، مصريون

# Quotation pairs and line-initial dialogue dashes.
_QUOTE_PAIRS = re.compile(r"«[^»]*\w[^»]*»|“[^”]*\w[^”]*”|\"[^\"]*\w[^\"]*\"")
_DIALOGUE_DASH = re.compile(r"(?m)^\s*[-–—]\s*\S")


def _term_pattern(term: str, possessive: bool) -> str:
    """A regex for one normalized term: clitics before it, the article optional, possessive suffixes if asked."""
    first, *rest = term.split()
    tail = "".join(r"\s+" + re.escape(word) for word in rest)
    if first.startswith("ال"):
        head = f"(?:{_ARTICLE}|{_CLITICS}){re.escape(first[2:])}"
    elif first.endswith("ي"):  # a demonym stem
        head = f"(?:{_ARTICLE}|{_CLITICS}){re.escape(first)}{_DEMONYM_ENDINGS}"
    else:
        head = f"{_CLITICS}{re.escape(first)}"
    # Possessives only where they are natural (بيتهم), not on names: قطره is "a drop", not Qatar.
    suffix = _PRONOUNS if possessive and not rest else ""
    return head + suffix + tail


@functools.cache
def _matcher(terms: tuple[str, ...], possessive: bool) -> re.Pattern:
    normalized = sorted({normalize_arabic(t) for t in terms if t}, key=len, reverse=True)
    alternatives = "|".join(_term_pattern(t, possessive) for t in normalized)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def mentions(text: str, terms: tuple[str, ...], possessive: bool = False) -> bool:
    """Whether `text` names any of `terms` as whole words (after Arabic normalization, with clitics and suffixes)."""
    return bool(terms) and bool(_matcher(tuple(terms), possessive).search(_normalized(text)))


@functools.lru_cache(maxsize=64)
def _normalized(text: str) -> str:
    """normalize_arabic, cached: one story is checked for its country, place and season."""
    return normalize_arabic(text)


@functools.cache
def _varieties() -> tuple:
    from arastory.prompts.varieties import available_varieties

    return tuple(load_variety(name) for name in available_varieties())


@functools.cache
def _localized(feature: str, value: str) -> tuple[str, ...]:
    """The feature value's wording in every variety config, so a Darija story naming المستشفى still counts."""
    names = []
    for variety in _varieties():
        wording = variety.values.get(feature, {}).get(value)
        if wording:
            names.append(wording)
    return tuple(names)


def feature_terms(feature: str, value: Any) -> tuple[str, ...]:
    """Every wording that counts as naming `value` of `feature` (localized values plus our aliases)."""
    value = str(value)
    aliases = {"country": COUNTRY_ALIASES, "season": SEASON_ALIASES, "place": PLACE_ALIASES}[feature]
    return _localized(feature, value) + aliases.get(value, ())


def _named(story: str, features: dict, feature: str) -> int | None:
    if features.get(feature) in (None, ""):
        return None
    terms = feature_terms(feature, features[feature])
    if not terms:  # a value no variety config knows: cannot be checked
        return None
    return int(mentions(story, terms, possessive=feature == "place"))


def has_dialogue(story: str) -> bool:
    """Quoted speech («…», “…”, "…") or lines that open with a dialogue dash."""
    return bool(_QUOTE_PAIRS.search(story) or _DIALOGUE_DASH.search(story))


def story_metrics(story: str, variety: str, features: dict | None, classifier: DialectIdentifier | None) -> dict:
    """Per-story metrics; a feature check is None when the prompt did not ask for that feature.

    `classifier`: a dialect identifier (arastory's classifier or CAMeL's; None leaves the dialect metrics None).
    """
    story, features = story or "", features or {}
    out: dict[str, Any] = {
        "dialect_correct": None,
        "dialect_prob": None,
        "dialect_share": None,
        "dialect_msa_share": None,
    }
    if classifier is not None and story.strip():
        analysis = classifier.analyze(story, target=variety)
        out.update(
            dialect_correct=int(analysis.predicted == variety),
            dialect_prob=float(analysis.probabilities.get(variety, 0.0)),
            dialect_share=float(analysis.dialect_share),
        )
        if variety != "msa":  # dialect drift: the share of MSA sentences in a dialect story
            out["dialect_msa_share"] = round(float(getattr(analysis, "msa_share", 0.0)), 4)
    elif classifier is not None:
        out.update(dialect_correct=0, dialect_prob=0.0, dialect_share=0.0)
    markers = markers_in(story)
    out.update(
        dialect_markers=len(markers.get(variety, [])),
        words=word_count(story),
        sentences=len(sentences(story)),
        arabic_share=round(arabic_share(story), 4),
        country_named=_named(story, features, "country"),
        place_named=_named(story, features, "place"),
        season_named=_named(story, features, "season"),
        dialogue_present=int(has_dialogue(story)) if features.get("dialogue") else None,
    )
    return out


def distinct_n(stories: list[str], n: int) -> float | None:
    """Unique word n-grams / all word n-grams over the whole set (None when there are none)."""
    grams: Counter = Counter()
    for story in stories:
        tokens = words(story)
        grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return round(len(grams) / total, 4) if total else None


def self_bleu(stories: list[str]) -> float | None:
    """Mean sentence BLEU (sacrebleu, 0-100, effective order, exp smoothing) of each story against all the others.

    Equal to averaging BLEU().sentence_score(story, others), but linear instead of quadratic in the number of stories:
    for each n-gram only the two largest per-story counts are kept, which is all the clipped counts need.
    """
    return _self_bleu_of(_bleu_counts([s for s in stories if s and s.strip()]))


_BLEU = BLEU(effective_order=True)


def _bleu_counts(stories: list[str]) -> list[tuple]:
    """Per story: (its word n-gram counts up to BLEU's order, its length), sacrebleu's tokenization."""
    return [extract_all_word_ngrams(_BLEU.tokenizer(s.rstrip()), 1, _BLEU.max_ngram_order) for s in stories]


def _self_bleu_of(counted: list[tuple]) -> float | None:
    if len(counted) < 2:
        return None
    bleu = _BLEU
    top2: dict[tuple, tuple[int, int, int]] = {}  # n-gram -> (largest count, its story, second largest count)
    for index, (grams, _) in enumerate(counted):
        for gram, count in grams.items():
            best = top2.get(gram)
            if best is None:
                top2[gram] = (count, index, 0)
            elif count > best[0]:
                top2[gram] = (count, index, best[0])
            elif count > best[2]:
                top2[gram] = (best[0], best[1], count)
    lengths = [length for _, length in counted]
    scores = []
    for index, (grams, length) in enumerate(counted):
        correct, total = [0] * bleu.max_ngram_order, [0] * bleu.max_ngram_order
        for gram, count in grams.items():
            best = top2[gram]
            ref_count = best[2] if best[1] == index else best[0]
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, ref_count)
        ref_len = _closest_length(length, lengths[:index] + lengths[index + 1 :])
        scores.append(
            BLEU.compute_bleu(
                correct,
                total,
                length,
                ref_len,
                smooth_method=bleu.smooth_method,
                effective_order=True,
                max_ngram_order=bleu.max_ngram_order,
            ).score
        )
    return round(sum(scores) / len(scores), 4)


def _closest_length(length: int, others: list[int]) -> int:
    """sacrebleu's reference length rule: the closest one, the shorter on a tie."""
    return min(others, key=lambda other: (abs(length - other), other))


def corpus_metrics(stories: list[str]) -> dict:
    """Diversity of a set of stories: distinct-1, distinct-2 (0-1) and self-BLEU (0-100; lower is more diverse)."""
    return {"distinct_1": distinct_n(stories, 1), "distinct_2": distinct_n(stories, 2), "self_bleu": self_bleu(stories)}


DIVERSITY_METRICS = ("distinct_1", "distinct_2", "self_bleu")


def diversity_at(stories: list[str], k: int, repeats: int = 200, seed: int = 0, alpha: float = 0.05) -> dict:
    """Diversity at a fixed set size k, so evaluations of different n compare: for each metric, the mean over
    `repeats` random k-story subsets (without replacement, seeded) and the (1 - alpha) percentile interval over
    them. {metric: {mean, ci_low, ci_high, n (= k), of (stories available)}}; means None when fewer than k stories.
    """
    import numpy as np

    stories = [s for s in stories if s and s.strip()]
    if k < 2:
        from arastory.errors import ConfigError

        raise ConfigError("diversity.subsample", f"must be at least 2 stories, got {k}")
    if len(stories) < k:
        return {
            m: {"mean": None, "ci_low": None, "ci_high": None, "n": k, "of": len(stories)} for m in DIVERSITY_METRICS
        }
    unigrams = [Counter(words(s)) for s in stories]
    bigrams = [Counter(itertools.pairwise(ws)) for ws in (words(s) for s in stories)]
    counted = _bleu_counts(stories)
    rng = np.random.default_rng(seed)
    draws = (
        [range(len(stories))]
        if len(stories) == k
        else [rng.choice(len(stories), size=k, replace=False) for _ in range(repeats)]
    )
    values: dict[str, list[float | None]] = {m: [] for m in DIVERSITY_METRICS}
    for subset in draws:
        values["distinct_1"].append(_distinct_of([unigrams[i] for i in subset]))
        values["distinct_2"].append(_distinct_of([bigrams[i] for i in subset]))
        values["self_bleu"].append(_self_bleu_of([counted[i] for i in subset]))
    out: dict[str, dict] = {}
    for metric, series in values.items():
        data = np.array([v for v in series if v is not None], dtype=float)
        if not len(data):
            out[metric] = {"mean": None, "ci_low": None, "ci_high": None, "n": k, "of": len(stories)}
            continue
        low, high = np.percentile(data, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out[metric] = {
            "mean": round(float(data.mean()), 4),
            "ci_low": round(float(low), 4),
            "ci_high": round(float(high), 4),
            "n": k,
            "of": len(stories),
        }
    return out


def _distinct_of(counters: list[Counter]) -> float | None:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    n = sum(total.values())
    return len(total) / n if n else None


def dialect_drift(rows: list[dict]) -> dict:
    """Per dialect variety, the distribution of `dialect_msa_share` over its stories (story_metrics rows)."""
    from arastory.dialect.evaluation import drift_distribution

    varieties = sorted({r["variety"] for r in rows if r.get("dialect_msa_share") is not None})
    return {
        v: drift_distribution(
            [r["dialect_msa_share"] for r in rows if r["variety"] == v and r.get("dialect_msa_share") is not None]
        )
        for v in varieties
    }
