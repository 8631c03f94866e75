"""Per-story metrics (dialect, length, script, prompt features) and set metrics (distinct-n, sacrebleu self-BLEU)."""

import pytest
from sacrebleu.metrics import BLEU

from arastory.data.bundled import load_bundled_stories
from arastory.dialect.classifier import load_or_train, training_records
from arastory.evaluate.metrics import COUNTRY_ALIASES, corpus_metrics, feature_terms, mentions, story_metrics

EGY = (
    "ياسين كان عايز يلعب كورة في الشارع، بس ماما قالت له: «مش دلوقتي يا حبيبي، الجو حر أوي النهارده.» "
    "ياسين زعل شوية وقعد جنب الشباك. بعد شوية جه صاحبه وقال له: «إيه رأيك نروح المكتبة عشان نقرا؟»"
)
MSA = (
    "في صباح يوم مشمس، خرجت ليلى إلى الحديقة لتلعب مع صديقتها. وعندما وصلتا، وجدتا طائرًا صغيرًا قد سقط "
    "من عشّه. قالت ليلى: «يجب أن نساعده.» فحملتاه بلطف وأعادتاه إلى العش الذي كان فوق الشجرة."
)


@pytest.fixture(scope="module")
def classifier():
    return load_or_train(training_records("bundled"))


@pytest.fixture(scope="module")
def bundled():
    return load_bundled_stories()


def test_dialect_metrics_follow_the_classifier(classifier):
    egy = story_metrics(EGY, "egy", {}, classifier)
    assert egy["dialect_correct"] == 1 and egy["dialect_prob"] > 0.5 and egy["dialect_share"] > 0.5
    assert egy["dialect_markers"] >= 4  # مش، دلوقتي، أوي، إيه، عشان
    as_msa = story_metrics(EGY, "msa", {}, classifier)
    assert as_msa["dialect_correct"] == 0 and as_msa["dialect_prob"] < 0.5
    assert story_metrics(MSA, "msa", {}, classifier)["dialect_correct"] == 1
    analysis = classifier.analyze(EGY, target="egy")
    assert egy["dialect_prob"] == analysis.probabilities["egy"] and egy["dialect_share"] == analysis.dialect_share


def test_without_a_classifier_dialect_metrics_are_none():
    out = story_metrics(MSA, "msa", {}, None)
    assert (out["dialect_correct"], out["dialect_prob"], out["dialect_share"]) == (None, None, None)
    assert out["words"] == len(MSA.split()) and out["arabic_share"] == 1.0


def test_length_and_script_share():
    out = story_metrics("hello world مرحبا بكم", "msa", {}, None)
    assert out["words"] == 4 and out["arabic_share"] == pytest.approx(8 / 18, abs=1e-4)  # 10 Latin, 8 Arabic letters


@pytest.mark.parametrize(
    "text,country,expected",
    [
        ("سافر أحمد مع أسرته إلى مصر في الصيف.", "egypt", 1),
        ("كان الأطفال المصريون يلعبون في الشارع.", "egypt", 1),
        ("وصل القطار إلى المملكة العربية السعودية.", "saudi_arabia", 1),
        ("كانت سلمى ساكنة فالمغرب مع جدتها.", "morocco", 1),  # Darija ف + article
        ("رجع من لبنان وبلبنان ترك قلبه.", "lebanon", 1),
        ("الحكاية بتحصل في عُمان جنب البحر.", "oman", 1),  # diacritics are normalized away
        ("سقطت قطرة ماء على الورقة.", "qatar", 0),  # قطرة is a drop, not Qatar
        ("سافر أحمد مع أسرته إلى مصر.", "tunisia", 0),
        ("رفع يده اليمنى وسلّم على المعلم.", "yemen", 0),  # اليمنى is "the right (hand)"
    ],
)
def test_country_named(text, country, expected):
    assert story_metrics(text, "msa", {"country": country}, None)["country_named"] == expected


def test_feature_checks_are_none_unless_the_prompt_asked():
    out = story_metrics("قالت: «مرحبا».", "msa", {}, None)
    assert (out["country_named"], out["place_named"], out["season_named"], out["dialogue_present"]) == (None,) * 4


@pytest.mark.parametrize(
    "text,expected",
    [
        ("قالت الأم: «تعال يا حبيبي.»", 1),
        ('قال الولد: "أنا جائع".', 1),
        ("ذهب الولد إلى السوق.\n- هل أنت جائع؟\n- نعم!", 1),
        ("ذهب الولد إلى السوق واشترى تفاحة ثم رجع إلى البيت.", 0),
    ],
)
def test_dialogue_present_when_asked(text, expected):
    assert story_metrics(text, "msa", {"dialogue": True}, None)["dialogue_present"] == expected


def test_place_and_season_use_localized_dialect_wording():
    darija = "فالشتا، كانت سلمى كتقرا فدارهم مع خوها."
    out = story_metrics(darija, "mor", {"place": "home", "season": "winter"}, None)
    assert out["place_named"] == 1 and out["season_named"] == 1  # الدار with a possessive, الشتا
    out = story_metrics(darija, "mor", {"place": "hospital", "season": "summer"}, None)
    assert out["place_named"] == 0 and out["season_named"] == 0
    assert story_metrics("دخل أحمد السبيطار", "mor", {"place": "hospital"}, None)["place_named"] == 1
    assert "السبيطار" in feature_terms("place", "hospital") and "المستشفى" in feature_terms("place", "hospital")


def test_checks_on_the_bundled_corpus_find_what_the_prompts_asked(bundled):
    """Written for their prompts, the bundled stories name their country; other countries are rarely named."""
    named = [story_metrics(r.story, r.variety, r.features, None)["country_named"] for r in bundled]
    assert sum(named) / len(named) >= 0.98
    false_hits = sum(
        mentions(r.story, feature_terms("country", c))
        for r in bundled
        for c in COUNTRY_ALIASES
        if c != r.features["country"]
    )
    assert false_hits / (len(bundled) * (len(COUNTRY_ALIASES) - 1)) < 0.01
    asked = [r for r in bundled if r.features.get("dialogue")]
    assert asked and all(story_metrics(r.story, r.variety, r.features, None)["dialogue_present"] == 1 for r in asked)
    seasons = [
        story_metrics(r.story, r.variety, r.features, None)["season_named"] for r in bundled if r.features.get("season")
    ]
    assert sum(seasons) / len(seasons) >= 0.95


def test_distinct_n_by_hand():
    # unigrams a b a b a c: 3 unique / 6; bigrams ab ba ab ac: 3 unique / 4
    out = corpus_metrics(["a b a b", "a, c."])
    assert out["distinct_1"] == 0.5 and out["distinct_2"] == 0.75


def test_self_bleu_equals_sacrebleu_sentence_scores(bundled):
    stories = [r.story for r in bundled if r.variety == "egy"][:8]
    bleu = BLEU(effective_order=True)
    naive = sum(bleu.sentence_score(s, stories[:i] + stories[i + 1 :]).score for i, s in enumerate(stories)) / 8
    assert corpus_metrics(stories)["self_bleu"] == pytest.approx(naive, abs=1e-3)
    assert 0 < naive < 50


def test_self_bleu_extremes():
    story = "كان يا ما كان في قديم الزمان ولد صغير يحب القراءة كثيرا ويذهب إلى المكتبة كل يوم"
    assert corpus_metrics([story, story, story])["self_bleu"] == pytest.approx(100.0)
    assert corpus_metrics([story])["self_bleu"] is None
    assert corpus_metrics([]) == {"distinct_1": None, "distinct_2": None, "self_bleu": None}
