"""Training examples: story-only loss, end of story learned (EOS, or the chat template's end of turn), three chat
template styles, generation stopping at the end of turn, counted truncation/dropping, and the resumable order."""

import copy
import re

import pytest

from arastory.data.bundled import load_bundled_stories
from arastory.train.datamodule import StoryDataModule, pad_collate
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter, auto_max_length
from arastory.train.resume import CheckpointMismatch
from arastory.train.sampler import ResumableLoader, ResumableSampler

# Three chat template styles, written here (no hub access): the story is the assistant turn, and each ends it
# differently. `turn` is what the labels must decode to for story S: the rendered answer up to its end of turn.
LLAMA2 = (
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'].strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' }}"
    "{{ (m['content'] | trim) + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
STYLES = {
    "llama2": (LLAMA2, [], "</s>", " {story} </s>"),
    "chatml": (CHATML, ["<|im_start|>", "<|im_end|>"], "<|im_end|>", "{story}<|im_end|>"),
    "llama3": (LLAMA3, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>", "{story}<|eot_id|>"),
}


def chat_tokenizer(tiny_tokenizer, style: str):
    template, specials, _, _ = STYLES[style]
    tokenizer = copy.deepcopy(tiny_tokenizer)
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = template
    return tokenizer


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


@pytest.mark.parametrize("style", list(STYLES))
def test_chat_templates_train_the_assistant_turn_up_to_its_end_of_turn(tiny_tokenizer, records, style):
    tokenizer = chat_tokenizer(tiny_tokenizer, style)
    _, _, end_of_turn, turn = STYLES[style]
    formatter = ExampleFormatter(tokenizer, max_length=2048)
    record = records[0]
    example = formatter.encode(record.prompt, record.story)
    ids, labels = example["input_ids"], example["labels"]
    n_prompt = labels.index(next(label for label in labels if label != IGNORE_INDEX))
    generation_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": record.prompt}], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(ids[:n_prompt]) == generation_prompt, "the masked part is the user turn + generation prompt"
    assert all(label == IGNORE_INDEX for label in labels[:n_prompt])
    assert labels[n_prompt:] == ids[n_prompt:], "every token after the prompt is learned, nothing after the turn is fed"
    assert tokenizer.decode(labels[n_prompt:]) == turn.format(story=record.story.strip())
    assert labels[-1] == tokenizer.convert_tokens_to_ids(end_of_turn)
    if end_of_turn != tokenizer.eos_token:
        assert tokenizer.eos_token_id not in labels, "EOS is not this template's end of turn"
        assert formatter.stop_token_ids == [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(end_of_turn)]


def test_generation_stops_at_the_end_of_turn_token(tiny_tokenizer, records):
    from arastory.train.generate import generate_story
    from arastory.train.model import load_model

    tokenizer = chat_tokenizer(tiny_tokenizer, "chatml")
    model = load_model(tiny_tokenizer.name_or_path, None, "float32")
    model.resize_token_embeddings(len(tokenizer))
    im_end, calls = tokenizer.convert_tokens_to_ids("<|im_end|>"), []

    def prefer_end_of_turn(module, inputs, logits):  # the 4th generated token is <|im_end|>
        calls.append(1)
        if len(calls) >= 4:
            logits[..., -1, im_end] += 1e4
        return logits

    model.lm_head.register_forward_hook(prefer_end_of_turn)
    story = generate_story(model, ExampleFormatter(tokenizer), records[0].prompt, max_new_tokens=20, do_sample=False)
    assert len(calls) == 4, "decoding stops at <|im_end|> although it is not EOS"
    assert "<|im_end|>" not in story


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


def test_overlong_share_above_one_percent_warns_with_the_count(tiny_tokenizer, records):
    formatter = ExampleFormatter(tiny_tokenizer, max_length=400)
    for record in records[:50]:
        formatter.encode(record.prompt, record.story)
    stats = formatter.stats
    assert stats.as_dict()["lost_eos"] == stats.truncated > 0
    message = stats.warning("training", 400)
    assert f"{stats.truncated} of 50 training examples" in message and "data.max_length=400" in message
    assert ExampleFormatter(tiny_tokenizer, max_length=1024).stats.warning("training", 1024) is None


def test_default_and_auto_max_length_keep_every_bundled_story_whole(tiny_tokenizer, records):
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR

    default = OmegaConf.load(CONF_DIR / "data" / "bundled.yaml").max_length
    formatter = ExampleFormatter(tiny_tokenizer, max_length=default)
    for record in records:
        formatter.encode(record.prompt, record.story)
    assert formatter.stats.truncated == formatter.stats.dropped == 0, "the default covers the bundled stories"
    auto = auto_max_length(ExampleFormatter(tiny_tokenizer), records, context=1024)
    longest = max(ExampleFormatter(tiny_tokenizer).example_length(r.prompt, r.story) for r in records)
    assert auto % 64 == 0 and longest <= auto < longest + 64
    assert auto_max_length(ExampleFormatter(tiny_tokenizer), records, context=256) == 256, (
        "capped at the model's context"
    )


def test_released_stories_fit_the_default_max_length(tiny_tokenizer, released_dir):
    from omegaconf import OmegaConf

    from arastory.data.readers import read_stories
    from arastory.paths import CONF_DIR

    default = OmegaConf.load(CONF_DIR / "data" / "arastories.yaml").max_length
    formatter = ExampleFormatter(tiny_tokenizer, max_length=default)
    released = read_stories(released_dir)[::5]  # every 5th of the 2,546 (all of them: see docs/training.md)
    for record in released:
        formatter.encode(record.prompt, record.story)
    assert formatter.stats.truncated + formatter.stats.dropped <= 0.01 * len(released)


def test_sampler_order_is_seeded_per_epoch_and_restores_mid_epoch():
    sampler = ResumableSampler(10, seed=1, data_id="a")
    epoch0 = list(sampler)
    assert sorted(epoch0) == list(range(10)) and list(ResumableSampler(10, seed=1, data_id="a")) == epoch0
    sampler.consumed = 6
    sampler.set_epoch(0)
    assert list(sampler) == epoch0[6:], "a restart in the same epoch keeps the position"
    sampler.set_epoch(1)
    assert sampler.consumed == 0 and sorted(sampler) == list(range(10)) and list(sampler) != epoch0
    restored = ResumableSampler(10, seed=1, data_id="a")
    restored.load_state_dict({**sampler.state_dict(), "epoch": 0, "consumed": 4})
    assert list(restored) == epoch0[4:]
    with pytest.raises(CheckpointMismatch, match="training data changed"):
        ResumableSampler(10, seed=1, data_id="b").load_state_dict(sampler.state_dict())


def test_loader_state_counts_batches_handed_out_and_resumes_with_the_next_one(tiny_tokenizer, records):
    def loader():
        data = StoryDataModule(records[:10], {}, ExampleFormatter(tiny_tokenizer, max_length=128), batch_size=3, seed=5)
        return data.train_dataloader()

    full = [batch["example_ids"] for batch in loader()]
    interrupted = loader()
    batches = iter(interrupted)
    seen = [next(batches)["example_ids"], next(batches)["example_ids"]]
    state = interrupted.state_dict()
    assert state["consumed"] == 6 and isinstance(interrupted, ResumableLoader)
    resumed = loader()
    resumed.load_state_dict(state)
    assert seen + [batch["example_ids"] for batch in resumed] == full


def test_max_length_auto_is_resolved_from_the_run_data_and_the_model_context():
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.paths import CONF_DIR
    from arastory.train.data import build_training_data
    from arastory.train.model import load_tokenizer, resolve_model_path
    from arastory.train.recipe import build_formatter

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data.max_length=auto", "dialect=mor"])
    data = build_training_data(cfg.data, cfg.dialect, ["synthetic"], seed=cfg.seed)
    path = resolve_model_path(cfg.model)
    formatter = build_formatter(cfg, load_tokenizer(path), path, data)
    records = data.train["synthetic"] + data.val["mor"]
    longest = max(formatter.example_length(r.prompt, r.story) for r in records)
    assert formatter.max_length % 64 == 0 and longest <= formatter.max_length < longest + 64 <= 1024 + 64


def test_config_check_accepts_auto_and_names_a_bad_max_length():
    from hydra import compose, initialize_config_dir

    from arastory.cli import register_resolvers
    from arastory.errors import ConfigError
    from arastory.paths import CONF_DIR
    from arastory.train.checks import check_config

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        check_config(compose("train", overrides=["data.max_length=auto"]))
        with pytest.raises(ConfigError, match=re.escape("data.max_length: must be a positive integer or auto, got 0")):
            check_config(compose("train", overrides=["data.max_length=0"]))
        with pytest.raises(ConfigError, match=re.escape("data.split_seed: must be an integer")):
            check_config(compose("train", overrides=["data.split_seed=abc"]))
