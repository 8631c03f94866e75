"""Build (and cache) a small random-init Llama and a byte-level BPE tokenizer trained on the bundled text.

The result is an ordinary HF model directory, so the tiny default goes through exactly the same
`from_pretrained` + quantization + LoRA path as a 7B model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from arastory.io import fingerprint
from arastory.paths import cache_dir

BUILDER_VERSION = 2  # bump when the builder's output changes, so stale cached models are not reused
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def corpus_texts() -> list[str]:
    """All bundled Arabic text: stories, prompts and the Arabic side of the parallel set."""
    from arastory.data.bundled import load_bundled_parallel, load_bundled_stories

    texts = []
    for record in load_bundled_stories(validate=False):
        texts += [record.prompt, record.story]
    for pair in load_bundled_parallel(validate=False):
        texts += [pair.ar_prompt, pair.ar_story]
    return texts


def build_tiny_model(
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 384,
    vocab_size: int = 4000,
    max_position: int = 1024,
    seed: int = 0,
) -> str:
    """Return a local directory holding the tiny model and tokenizer, building it on first use."""
    texts = corpus_texts()
    spec = {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "intermediate_size": intermediate_size,
        "vocab_size": vocab_size,
        "max_position": max_position,
        "seed": seed,
    }
    key = fingerprint(BUILDER_VERSION, spec, texts)
    target = cache_dir() / "tiny" / f"llama-{key}"
    if (target / "config.json").exists() and (target / "tokenizer.json").exists():
        return str(target)
    staging = Path(
        tempfile.mkdtemp(dir=target.parent.parent if target.parent.exists() else cache_dir(), prefix=".tiny-")
    )
    try:
        tokenizer = _train_tokenizer(texts, vocab_size)
        tokenizer.save_pretrained(staging)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_kv_heads,
            max_position_embeddings=max_position,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
        )
        with torch.random.fork_rng(devices=[]):  # a cold cache must not shift the caller's RNG streams
            torch.manual_seed(seed)
            LlamaForCausalLM(config).save_pretrained(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            staging.rename(target)  # atomic: a half-built model is never visible at `target`
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def _train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS.values()), show_progress=False
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, model_max_length=1024, **SPECIAL_TOKENS)
