"""Batched generation: training's samples and evaluation's local stories come from left-padded batches, and every
story stops at EOS or at the chat template's end-of-turn token (evaluation used to stop at EOS only)."""

import pytest
import torch
from omegaconf import OmegaConf

from arastory.data.bundled import load_bundled_stories
from arastory.train.formatting import ExampleFormatter
from tests.test_formatting import chat_tokenizer


@pytest.fixture(scope="module")
def chatml_model(tiny_tokenizer):
    """The tiny base with a ChatML tokenizer whose 4th generated token is always <|im_end|> (not EOS)."""
    from arastory.train.model import load_model

    tokenizer = chat_tokenizer(tiny_tokenizer, "chatml")
    model = load_model(tiny_tokenizer.name_or_path, None, "float32")
    model.resize_token_embeddings(len(tokenizer))
    im_end, calls = tokenizer.convert_tokens_to_ids("<|im_end|>"), []

    def prefer_end_of_turn(module, inputs, logits):
        calls.append(1)
        if len(calls) % 100 >= 4:  # from the 4th decoding step of a generate call on
            logits[..., -1, im_end] += 1e4
        return logits

    model.lm_head.register_forward_hook(prefer_end_of_turn)
    return model, tokenizer, calls


def test_evaluation_stops_each_story_at_the_end_of_turn_token(chatml_model):
    from arastory.evaluate.systems import LocalGenerator, Sampling

    model, tokenizer, calls = chatml_model
    generator = LocalGenerator("tiny-chatml", model, tokenizer, max_length=1024, batch_size=2)
    calls.clear()
    prompts = [r.prompt for r in load_bundled_stories()[:2]]
    results = generator.generate(prompts, Sampling(max_new_tokens=20, do_sample=False), seed=0)
    assert len(calls) == 4, "decoding ends when every story has reached <|im_end|>, although it is not EOS"
    for result in results:
        assert result["meta"] == {"new_tokens": 3, "finished": True, "finish_reason": "stop"}
        assert "<|im_end|>" not in result["story"]


def test_samples_come_in_batches_in_the_held_out_order(tiny_tokenizer):
    from arastory.train.generate import generate_samples
    from arastory.train.model import load_model

    model = load_model(tiny_tokenizer.name_or_path, None, "float32")
    calls = []
    generate = model.generate
    model.generate = lambda **kwargs: calls.append(kwargs["input_ids"].shape) or generate(**kwargs)
    records = load_bundled_stories()
    val = {"msa": [r for r in records if r.variety == "msa"][:4], "egy": [r for r in records if r.variety == "egy"][:4]}
    sample_cfg = OmegaConf.create(
        {
            "per_variety": 3,
            "batch_size": 4,
            "max_new_tokens": 6,
            "temperature": 0.8,
            "top_p": 0.95,
            "do_sample": True,
            "seed": 0,
        }
    )
    rows = generate_samples(model, ExampleFormatter(tiny_tokenizer), val, sample_cfg)
    assert [len(shape) and shape[0] for shape in calls] == [4, 2], "6 stories in batches of 4"
    assert [(r["variety"], r["id"]) for r in rows] == [(v, r.id) for v in val for r in val[v][:3]]
    assert all(r["story"] for r in rows)
    assert generate_samples(model, ExampleFormatter(tiny_tokenizer), val, sample_cfg) == rows, "seeded: reproducible"
    assert not model.training and torch.is_grad_enabled()
