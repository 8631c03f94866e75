"""The 12-feature prompt sampler: order, always-present features, dialect wording, reproducibility."""

from arastory.prompts import PromptSampler, load_variety


def test_sampler_is_seeded_and_keeps_features():
    a = PromptSampler("egy", seed=3).sample(20)
    b = PromptSampler("egy", seed=3).sample(20)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    assert [p.features for p in a] == [p.features for p in b]
    assert [p.prompt for p in PromptSampler("egy", seed=4).sample(20)] != [p.prompt for p in a]


def test_always_present_features_and_order():
    sampler = PromptSampler("msa", seed=0)
    for p in sampler.sample(200):
        assert {"age", "ending", "n_characters", "country"} <= set(p.features)
        assert list(p.features) == [f for f in sampler.order if f in p.features]


def test_dialect_prompts_require_the_dialect_and_drop_disgust():
    egy, mor = load_variety("egy"), load_variety("mor")
    assert "disgust" not in egy.values["emotion"] and "disgust" in load_variety("msa").values["emotion"]
    prompt = PromptSampler("mor", seed=1).sample(1)[0].prompt
    assert mor.sentences["requirement"] in prompt and prompt.endswith(mor.sentences["closing"])
    assert egy.values["place"]["home"] == "البيت" and mor.values["place"]["home"] == "الدار"
