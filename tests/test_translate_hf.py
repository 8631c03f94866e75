"""The hf translator on a tiny random NLLB-architecture model built here: real from_pretrained loading, language
codes, batching, sentence splitting and rejoining, and a resumed run through the pipeline."""

import json
import re

import pytest
import torch
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.errors import ConfigError
from arastory.io import read_jsonl
from arastory.paths import CONF_DIR
from arastory.translate.hf_mt import HFTranslator
from arastory.translate.pipeline import translate
from arastory.translate.segments import segment

register_resolvers()


def build_tiny_nllb(target) -> str:
    """A 2-layer M2M100 (NLLB's architecture) with an NllbTokenizer whose BPE is trained on the bundled pairs."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    from arastory.data.bundled import load_bundled_parallel

    texts = [t for p in load_bundled_parallel(validate=False) for t in (p.en_prompt, p.en_story, p.ar_story)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=600, show_progress=False, special_tokens=["<s>", "<pad>", "</s>", "<unk>"]),
    )
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["merges"]]
    tokenizer = NllbTokenizer(vocab=spec["vocab"], merges=merges, src_lang="eng_Latn", tgt_lang="arb_Arab")
    tokenizer.save_pretrained(target)
    config = M2M100Config(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    M2M100ForConditionalGeneration(config).save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory):
    return build_tiny_nllb(tmp_path_factory.mktemp("tiny-nllb"))


STORY = (
    "Tom had a red ball. He liked to throw it high. One day the ball went over the wall!\n\n"
    'Tom was sad. His friend Sue came to help. She climbed the tree and saw the ball. "Here it is!" she said.\n\n'
    "They played all day. Tom said thank you to Sue."
)


def test_language_codes_come_from_the_model_and_bad_codes_fail_with_the_key(tiny_mt):
    mt = HFTranslator(tiny_mt, src_lang="eng_Latn", tgt_lang="arb_Arab", max_new_tokens=4)
    assert mt.device == "cpu" and mt.tokenizer.src_lang == "eng_Latn"
    assert mt.forced_bos == mt.tokenizer.convert_tokens_to_ids("arb_Arab")
    assert mt.tokenizer("Tom had a ball.")["input_ids"][0] == mt.tokenizer.convert_tokens_to_ids("eng_Latn")
    with pytest.raises(ConfigError, match=re.escape("translator.tgt_lang: 'ar' is not a language code")):
        HFTranslator(tiny_mt, src_lang="eng_Latn", tgt_lang="ar")
    with pytest.raises(ConfigError, match=re.escape("translator.model: '/nonexistent/mt' cannot be loaded")):
        HFTranslator("/nonexistent/mt")


def test_long_stories_are_split_into_sentence_chunks_batched_and_rejoined(tiny_mt):
    mt = HFTranslator(
        tiny_mt, src_lang="eng_Latn", tgt_lang="arb_Arab", batch_size=3, max_input_tokens=24, max_new_tokens=6
    )
    layout = segment(STORY, mt._token_length, 24)
    assert len(layout.chunks) >= 5 and layout.separators.count("\n\n") == 2
    assert all(mt._token_length(c) <= 24 for c in layout.chunks)
    assert " ".join(layout.chunks).replace("\n", " ").split() == STORY.split(), "no text lost or reordered"

    short = "The cat sat."
    out = mt.translate([STORY, short])
    chunks = len(layout.chunks) + 1
    assert mt.stats.segments == chunks and mt.generate_calls == -(-chunks // 3)
    assert out[0].count("\n\n") == 2, "paragraph breaks survive the round trip"
    assert mt.stats.truncated_segments == 0 and mt.stats.input_tokens > 0 and mt.stats.output_tokens > 0

    # Batched, length-sorted generation gives each chunk the translation it gets alone, in the original order.
    one_by_one = HFTranslator(
        tiny_mt, src_lang="eng_Latn", tgt_lang="arb_Arab", batch_size=1, max_input_tokens=24, max_new_tokens=6
    )
    singles = [one_by_one.translate_chunks([c])[0] for c in layout.chunks]
    assert out[0] == layout.join(singles)
    assert out[1] == one_by_one.translate_chunks([short])[0]


def compose_translate(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="translate", overrides=overrides)


def test_pipeline_resumes_after_a_partial_write_without_redoing_finished_items(tiny_mt, tmp_path):
    source = tmp_path / "stories.jsonl"
    source.write_text(
        "".join(
            json.dumps({"prompt": f"Write story {i}.", "story": f"Story number {i}. It ends."}) + "\n" for i in range(7)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    base = [
        f"source={source}",
        f"out={out}",
        "translator=hf",
        f"translator.model={tiny_mt}",
        "translator.max_new_tokens=4",
        "batch_size=2",
    ]
    first = translate(compose_translate([*base, "limit=3"]))
    assert (first["read"], first["translated"], first["rows_in_output"]) == (3, 3, 3)
    rows = read_jsonl(out / "parallel.jsonl")
    assert [r["id"] for r in rows] == ["stories-0", "stories-1", "stories-2"]
    assert rows[0]["en_prompt"] == "Write story 0." and rows[0]["translator"] == f"hf:{tiny_mt}"
    # A run killed mid-write leaves half a row: it is cut and that item translated again, the others are not.
    with open(out / "parallel.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "stories-3", "en_prompt": "Write st')
    second = translate(compose_translate(base))
    assert second["already_done"] == 3 and second["translated"] == 4 and second["rows_in_output"] == 7
    ids = [r["id"] for r in read_jsonl(out / "parallel.jsonl")]
    assert sorted(ids) == [f"stories-{i}" for i in range(7)] and len(ids) == len(set(ids))
    assert json.loads((out / "report.json").read_text())["status"] == "complete"
