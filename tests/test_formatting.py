"""Training examples: story-only loss, EOS learned, chat templates, and counted truncation/dropping."""

import pytest

from arastory.data.bundled import load_bundled_stories
from arastory.train.datamodule import ResumableSampler, pad_collate
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def records():
    return load_bundled_stories()


def test_labels_mask_prompt_and_end_with_eos(tiny_tokenizer, records):
    formatter = ExampleFormatter(tiny_tokenizer, max_length=1024)
    for record in records[:50]:
        example = formatter.encode(record.prompt, record.story)
        labels, ids = example["labels"], example["input_ids"]
        n_prompt = len(formatter.prompt_ids(record.prompt))
        assert all(label == IGNORE_INDEX for label in labels[:n_prompt])
        assert all(label != IGNORE_INDEX for label in labels[n_prompt:])
        assert labels[-1] == tiny_tokenizer.eos_token_id == ids[-1]
        assert tiny_tokenizer.decode(ids[n_prompt:-1]).strip() == record.story.strip()


def test_chat_template_is_used_when_present(tiny_tokenizer, records):
    tiny_tokenizer.chat_template = CHAT_TEMPLATE
    try:
        formatter = ExampleFormatter(tiny_tokenizer, max_length=1024)
        text = formatter.prompt_text(records[0].prompt)
        assert text.startswith("<|user|>") and text.endswith("<|assistant|>")
        example = formatter.encode(records[0].prompt, records[0].story)
        assert example["labels"][-1] == tiny_tokenizer.eos_token_id
        assert any(label != IGNORE_INDEX for label in example["labels"])
    finally:
        tiny_tokenizer.chat_template = None


def test_overlong_examples_are_truncated_or_dropped_and_counted(tiny_tokenizer, records):
    truncating = ExampleFormatter(tiny_tokenizer, max_length=120, overflow="truncate")
    dropping = ExampleFormatter(tiny_tokenizer, max_length=120, overflow="drop")
    kept = [truncating.encode(r.prompt, r.story) for r in records[:20]]
    assert truncating.stats.truncated > 0
    for example in filter(None, kept):
        assert len(example["input_ids"]) <= 120
        assert any(label != IGNORE_INDEX for label in example["labels"]), "never all masked"
    assert [dropping.encode(r.prompt, r.story) for r in records[:20]].count(None) == dropping.stats.dropped > 0


def test_prompt_longer_than_limit_is_dropped_not_fully_masked(tiny_tokenizer, records):
    formatter = ExampleFormatter(tiny_tokenizer, max_length=16)
    assert formatter.encode(records[0].prompt, records[0].story) is None
    assert formatter.stats.dropped == 1 and formatter.stats.kept == 0


def test_padding_is_masked(tiny_tokenizer, records):
    formatter = ExampleFormatter(tiny_tokenizer, max_length=1024)
    batch = pad_collate(tiny_tokenizer.pad_token_id)([formatter.encode(r.prompt, r.story) for r in records[:3]])
    padded = batch["attention_mask"] == 0
    assert padded.any() and (batch["labels"][padded] == IGNORE_INDEX).all()


def test_sampler_resumes_mid_epoch():
    sampler = ResumableSampler(10, batch_size=2, seed=1)
    full = list(sampler)
    sampler.skip_batches = 3
    assert list(sampler) == full[6:]
    assert list(sampler) == full, "the skip applies once"
    sampler.set_epoch(1)
    assert list(sampler) != full
