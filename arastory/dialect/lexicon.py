"""Words that occur in one dialect and not in MSA, counted per story as evidence next to the n-gram model (ours).

MARKERS (markers.py) are the short published lists the other modules report; this lexicon is longer and only feeds
the classifier: function words, pronouns, negation, verb prefixes (Moroccan ك-, Egyptian بـ/هـ) and inflected
forms, each written as it appears in LLM output. Words that are also common MSA or names (هادي, مالك, دار)
are left out (also words that are MSA once normalized: بقى→بقي, خاص, راه, حاجة, ديك, بلي), so a story without
dialect has (almost) no hits.
"""

from __future__ import annotations

import math

from arastory.text import normalize_arabic, words

LEXICON: dict[str, tuple[str, ...]] = {
    "egy": tuple(
        """
        مش ده دي دول كده كدا عشان علشان إزاي ازاي إيه ايه أوي اوي دلوقتي دلوقت عايز عايزة عايزه عايزين عاوز عاوزة
        بتاع بتاعة بتاعه بتاعي بتاعك بتاعنا بتاعهم بتاعتي بتاعتك بتاعته بتاعتها بتاعتنا بتاعتهم النهارده النهاردة
        إمبارح امبارح خالص برضه برضو لسه أهو اهو مفيش مافيش إحنا احنا إنتو انتو انتوا العيال الواد البت ماكنش مكنش
        ماكانوش إزيك ازيك بصي كويس كويسة كويسين هنروح هيروح هتروح هنعمل هيعمل هتعمل بيحب بتحب بيلعب بتلعب بيقول
        بتقول بيعمل بتعمل أوضة اوضة ماتخافش متخافش
    """.split()
    ),
    "mor": tuple(
        """
        ديال ديالو ديالها ديالهم ديالي ديالك ديالنا ديالكم بزاف غادي غادية غاديين باش هاد هادو هادشي داك داكشي
        دابا كاين كاينة كاينين ماكاينش واش شنو آش كيفاش فاش ملي منين بغا بغات بغيت بغاو بغينا مزيان مزيانة مزيانين
        زوين زوينة زوينين ديما حيت والو كولشي كلشي صافي واخا دغيا بالزربة بزربة خاصك خاصني خاصو خاصها خاصهم
        خاصنا خصنا خصك عاود عاودات گال گالت بحال شحال الدراري دري الدري وليدات الحومة كيلعب كيلعبو
        كتلعب كنلعب كيمشي كيمشيو كتمشي كنمشيو كيقول كتقول كيدير كتدير كنديرو كيشوف كتشوف كيعرف كتعرف كيبغي كتبغي
        كنبغي كيخدم كتخدم كيحب كتحب كيعيش كتعيش كيضحك كتضحك كيجري كيبكي كتبكي كيتسناو حنا نتوما هوما راني راك
         مشات جات لقات هضر هضرات تما عافاك
        طاح طاحت طاحو طحت علاش شكون فوقاش هادوك هاديك هداك هاداك بصح ياك كاع زعما البارح فحال جوج بجوج
        خويا ختي ختو نتا نتي بغيتي بغيتو نبغي نبغيك نبغيها نبغيو تبغي تبغيو عيط عيطات عيطو نوض نوضي ناض ناضت
        الحانوت بنادم ولات عطاه عطاها عطيني شرات مزال وخا صاوب صاوبات
    """.split()
    ),
    # Dialectal in both Egyptian and Moroccan (and elsewhere), never MSA: evidence of dialect, not of which one.
    "dialect": tuple(
        """
        اللي شوية شويه ماكانش ماكانتش مكانش فين برا ليه ليها ليهم ليك ليا معاه معاها معاهم معايا عليا يقدرو يلعبو كانو
        يمشيو قررو ولاو عاشو رجعو بداو شافو قالو جاو لقاو خلاه خلاها بقات
    """.split()
    ),
}

NORMALIZED_LEXICON = {group: frozenset(normalize_arabic(w) for w in vocab) for group, vocab in LEXICON.items()}
GROUPS = tuple(LEXICON)

# Present/future verbs by prefix (ours): Moroccan ك + person prefix (كيلعب, كتشوفها, كنمشيو), Egyptian بـ + person
# prefix (بيلعب, بتحب, بنعمل) and هـ future (هيروح, هنشوف). Only these stems and suffixes count, so that MSA words
# that start alike (كيف, كتاب, كنت, بيت, بين, بنت, هيا, هناك) never match.
VERB_STEMS = tuple(
    """
    لعب شوف قول دير مشي عرف بغي خدم حب عيش ضحك جري بكي هضر شرب نعس قرا كتب سكن رجع خرج دخل طيب عاون حس فكر
    تعلم سمع جيب عطي خلي ركب طلع نزل هبط تكلم ساعد حاول تسنا فهم نسا لقا لبس غسل رسم غني جمع حط سول نام قعد
    وقف بص عمل روح ضرب طير عوم صلي درس زور حكي خاف بدا صاوب قلب تفرج تسارا شري صيفط سكت فرح وصل كمل طلب هرب
    اكل نط حضي عاود تسنى جلس تخبع
""".split()
)
VERB_SUFFIXES = (
    "",
    "و",
    "وا",
    "ي",
    "ه",
    "ها",
    "هم",
    "ني",
    "نا",
    "ك",
    "كم",
    "وه",
    "وها",
    "وهم",
    "ليه",
    "ليها",
    "ليهم",
    "لي",
    "لك",
    "ش",
    "هاش",
    "وش",
)
VERB_PREFIXES = {
    "mor": ("كي", "كت", "كن", "كاي", "كات", "كان", "تاي", "تات", "تان"),
    "egy": ("بي", "بت", "بن", "هي", "هت", "هن"),
}
# Where ب + a noun reads as MSA (بتعاون "with cooperation", بتفهم "with understanding", بنعومة), those forms are out.
_MSA_LOOKALIKES = {("بت", "عاون"), ("بت", "فهم"), ("بن", "عوم")}
_VERB_FORMS = {
    group: frozenset(
        normalize_arabic(prefix + stem + suffix)
        for prefix in prefixes
        for stem in VERB_STEMS
        for suffix in VERB_SUFFIXES
        if (prefix, stem) not in _MSA_LOOKALIKES
    )
    for group, prefixes in VERB_PREFIXES.items()
}


# Morphology beyond the stem list (ours). Moroccan present/habitual كيـ + any stem of three letters or more (كيعاون,
# كيتسناو), except the MSA words that start alike (كيف..., كيلو..., وكيل..., كيمياء, كيكة..., كيس, كيان). Negation by
# the ما...ش circumfix (ماكيعرفش, مابغاش, ماعندوش), Moroccan and Egyptian alike, so it is evidence of dialect, not of
# which one.
MIN_PATTERN_LENGTH = 5
_KI_MSA_PREFIXES = ("كيف", "كيل", "كيمي", "كينون", "كيان", "كيك")
_KI_MSA_WORDS = frozenset(normalize_arabic(w) for w in "كيسه كيسها كيسي كيسين كيسان كينيا".split())


def _pattern_group(token: str) -> str | None:
    """The lexicon group a normalized token belongs to by its morphology alone (None: no pattern matches)."""
    if len(token) < MIN_PATTERN_LENGTH:
        return None
    if token.startswith("ما") and token.endswith("ش"):
        return "dialect"
    if token.startswith("كي") and not token.startswith(_KI_MSA_PREFIXES) and token not in _KI_MSA_WORDS:
        return "mor"
    return None


def lexicon_words(text: str) -> dict[str, list[str]]:
    """Per group (egy, mor, dialect): the normalized tokens of `text` that are its words or forms, in order."""
    found: dict[str, list[str]] = {group: [] for group in GROUPS}
    for token in (normalize_arabic(t) for t in words(text)):
        groups = _groups_of(token)
        # The conjunction و is written onto the word (وكيقول, وماعرفش); short words stay whole (ودي is MSA "my love").
        if not groups and token.startswith("و") and len(token) > MIN_PATTERN_LENGTH - 1:
            groups = _groups_of(token[1:])
        for group in groups:
            found[group].append(token)
    return found


def _groups_of(token: str) -> list[str]:
    listed = [g for g in GROUPS if token in NORMALIZED_LEXICON[g] or token in _VERB_FORMS.get(g, frozenset())]
    pattern = None if listed else _pattern_group(token)
    return listed or ([pattern] if pattern else [])


def lexicon_features(text: str) -> list[float]:
    """Per group (egy, mor, dialect): log(1 + distinct words seen) and hits per 100 words."""
    total = max(len(words(text)), 1)
    out = []
    for hits in lexicon_words(text).values():
        out += [math.log1p(len(set(hits))), 100.0 * len(hits) / total]
    return out
