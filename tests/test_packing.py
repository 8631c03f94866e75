"""Padding-free packing: a packed row trains exactly like its examples unpacked (loss, gradients), its examples never
see each other, rows hold every example once within the budget; the length-grouped sampler and the token cache."""

import random

import numpy as np
import pytest
import torch

from arastory.data.bundled import load_bundled_stories
from arastory.train.datamodule import StoryDataModule, pad_collate
from arastory.train.formatting import IGNORE_INDEX, ExampleFormatter
from arastory.train.loss import story_nll
from arastory.train.packing import pack_rows, packed_collate
from arastory.train.sampler import LengthGroupedSampler

FORWARD = ("input_ids", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    """Four whole bundled stories of different lengths (prompt + story + EOS)."""
    formatter = ExampleFormatter(tiny_tokenizer, max_length=1024)
    out = [{**formatter.encode(r.prompt, r.story), "id": r.id} for r in load_bundled_stories()[:4]]
    assert len({len(e["input_ids"]) for e in out}) == 4
    return out


def lora_model(tokenizer, attention: str):
    """The tiny base in fp32 with LoRA (dropout off, LM head trained), loaded with `attention` as arastory would."""
    from peft import LoraConfig

    from arastory.train.attention import resolve_attn_implementation
    from arastory.train.model import apply_lora, load_model

    implementation = (
        resolve_attn_implementation("sdpa", packing=True, on_cuda=False) if attention == "sdpa_packed" else attention
    )
    torch.manual_seed(0)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj", "down_proj"],
        modules_to_save=["lm_head"],
        task_type="CAUSAL_LM",
    )
    return apply_lora(load_model(tokenizer.name_or_path, None, "float32", implementation), config, quantized=False)


def loss_and_grads(model, batch):
    model.zero_grad()
    loss = story_nll(model, batch)
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


# sdpa_packed: arastory's per-example SDPA; sdpa and eager: transformers' block-causal mask built from the reset
# position ids (masking_utils.find_packed_sequence_indices), which needs use_cache=False (story_nll passes it).
@pytest.mark.parametrize("attention", ["sdpa_packed", "sdpa", "eager"])
def test_a_packed_row_has_the_loss_and_gradients_of_its_examples_unpacked(tiny_tokenizer, examples, attention):
    model = lora_model(tiny_tokenizer, attention)
    padded = pad_collate(tiny_tokenizer.pad_token_id, extras=True)(examples)
    packed = packed_collate()([examples])
    assert (
        packed["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples)) and "attention_mask" not in packed
    )
    loss_padded, grads_padded = loss_and_grads(model, padded)
    loss_packed, grads_packed = loss_and_grads(model, packed)
    hf_loss = float(
        model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], labels=padded["labels"]).loss
    )
    assert loss_packed == pytest.approx(loss_padded, rel=1e-6) and loss_padded == pytest.approx(hf_loss, rel=1e-6)
    for name, grad in grads_padded.items():
        assert torch.allclose(grads_packed[name], grad, rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize("attention", ["sdpa_packed", "sdpa"])
def test_examples_of_a_packed_row_never_attend_to_each_other(tiny_tokenizer, examples, attention):
    model = lora_model(tiny_tokenizer, attention).eval()
    perturbed = [{**examples[0], "input_ids": [(t * 7 + 3) % 4000 for t in examples[0]["input_ids"]]}, *examples[1:]]
    logits = []
    for row in (examples, perturbed):
        batch = packed_collate()([row])
        with torch.no_grad():
            logits.append(model(**{k: batch[k] for k in FORWARD}, use_cache=False).logits[0])
    first = len(examples[0]["input_ids"])
    assert not torch.allclose(logits[0][:first], logits[1][:first]), "example 0 itself changed"
    assert torch.allclose(logits[0][first:], logits[1][first:], atol=1e-5), "the other examples saw example 0"


def test_packed_collate_masks_each_first_label_and_learns_each_eos(tiny_tokenizer, examples):
    batch = packed_collate()([examples])
    starts = batch["cu_seq_lens_q"][:-1].tolist()
    assert batch["cu_seq_lens_q"].tolist() == [
        0,
        *torch.tensor([len(e["input_ids"]) for e in examples]).cumsum(0).tolist(),
    ]
    assert (batch["position_ids"][0, starts] == 0).all() and batch["position_ids"][0, -1] == len(
        examples[-1]["input_ids"]
    ) - 1
    eos = tiny_tokenizer.eos_token_id
    assert int((batch["targets"] == eos).sum()) == len(examples), "every example ends by learning EOS"
    story_tokens = sum(sum(1 for label in e["labels"] if label != IGNORE_INDEX) for e in examples)
    assert batch["targets"].numel() == story_tokens and batch["num_tokens"] == batch["num_slots"]
    every_token = packed_collate()([[{**e, "labels": e["input_ids"]} for e in examples]])  # no masked prompt
    assert (every_token["labels"][0, starts] == IGNORE_INDEX).all(), (
        "no example's first token is predicted from another"
    )
    assert every_token["targets"].numel() == sum(len(e["input_ids"]) - 1 for e in examples)


def test_packed_rows_hold_every_example_once_within_the_budget():
    lengths = [random.Random(k).randint(40, 600) for k in range(500)]
    rows = pack_rows(lengths, budget=2048, seed=3)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 2048 for row in rows)
    assert sum(lengths) / (len(rows) * 2048) > 0.95, "rows are nearly full"
    assert pack_rows(lengths, 2048, seed=3) == rows and pack_rows(lengths, 2048, seed=4) != rows
    with pytest.raises(ValueError, match="does not fit a packed row of 500"):
        pack_rows([600], budget=500, seed=0)


def test_length_grouped_batches_pad_less_and_resume_mid_epoch(tiny_tokenizer):
    formatter = ExampleFormatter(tiny_tokenizer, max_length=1024)
    records = load_bundled_stories()[:48]

    def module(group):
        return StoryDataModule(records, {}, formatter, batch_size=4, seed=1, group_by_length=group)

    def padding(data):
        batches = list(data.train_dataloader())
        return 1 - sum(b["num_tokens"] for b in batches) / sum(b["num_slots"] for b in batches), batches

    (plain, _), (grouped, batches) = padding(module(False)), padding(module(True))
    assert isinstance(module(True).sampler, LengthGroupedSampler) and grouped < plain / 3
    data = module(True)
    loader = data.train_dataloader()
    iterator = iter(loader)
    seen = [next(iterator)["example_ids"] for _ in range(5)]
    resumed = module(True).train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    assert seen + [b["example_ids"] for b in resumed] == [b["example_ids"] for b in batches]
    data.sampler.set_epoch(1)
    assert [b["example_ids"] for b in data.train_dataloader()] != [b["example_ids"] for b in batches]


def test_a_second_run_reads_the_token_cache_and_a_new_max_length_misses_it(tiny_tokenizer, tmp_path, monkeypatch):
    encodes = []
    encode = ExampleFormatter.encode
    monkeypatch.setattr(ExampleFormatter, "encode", lambda self, *a: encodes.append(1) or encode(self, *a))
    records, val = load_bundled_stories()[:12], {"egy": load_bundled_stories()[12:15]}

    def build(max_length, cache=tmp_path):
        module = StoryDataModule(
            records, val, ExampleFormatter(tiny_tokenizer, max_length=max_length), batch_size=2, token_cache=cache
        )
        assert encodes == [], "constructing the data module tokenizes nothing (setup() does)"
        module.setup("fit")
        return module

    first = build(300)
    assert len(encodes) == 15 and first.format_stats.truncated > 0
    assert isinstance(first.train_set.arrays["input_ids"], np.memmap), "token ids are read from the cache's file"
    encodes.clear()
    first.setup("validate")
    assert encodes == [], "setup() tokenizes once"
    encodes.clear()
    second = build(300)
    assert encodes == [], "the second run tokenizes nothing"
    assert [second.train_set[i] for i in range(12)] == [first.train_set[i] for i in range(12)]
    assert vars(second.format_stats) == vars(first.format_stats), "truncation counts come back with the cache"
    uncached = build(300, cache=None)
    assert [uncached.train_set[i] for i in range(12)] == [first.train_set[i] for i in range(12)]
    encodes.clear()
    build(400)
    assert len(encodes) == 15, "another max_length is another cache entry"
