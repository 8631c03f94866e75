"""Tokenize once: a record set's encoded examples, kept on disk as memory-mapped arrays and reused by every run.

The key is everything the encoding depends on: the tokenizer (its full definition, special tokens, chat template),
the plain template, `max_length`, `overflow`, `min_story_tokens`, the encoder's version and the records' content
(ids, prompts, stories). A 2M-story translated set is then tokenized once per tokenizer and `max_length`, not per
run or sweep job; two jobs filling the same entry at once each write a private copy and the first rename wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from arastory.io import fingerprint
from arastory.records import StoryRecord
from arastory.train.formatting import IGNORE_INDEX, PLAIN_TEMPLATE, ExampleFormatter, FormatStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ENCODER_VERSION = 1  # bump when ExampleFormatter.encode changes what it produces
PROGRESS_FROM = 5_000  # show a progress bar when encoding at least this many records
SINK_CHUNK = 1 << 22  # token ids held in memory before a write (16 MB)
ARRAYS = ("input_ids", "offsets", "prompt_lengths", "story_chars", "story_words")


class EncodedExamples(Dataset):
    """Encoded examples as flat arrays: item i is {input_ids, labels, story_chars, story_words, id} (lists, as
    `ExampleFormatter.encode` returns them); `length(i)` without building the item."""

    def __init__(self, arrays: dict[str, np.ndarray], ids: list[str], stats: FormatStats):
        self.arrays, self.ids, self.stats = arrays, ids, stats
        self._offsets = arrays["offsets"]

    @classmethod
    def encode(
        cls, records: list[StoryRecord], formatter: ExampleFormatter, directory: Path | None = None
    ) -> EncodedExamples:
        """Encode `records` into flat arrays; with `directory`, the token ids stream to `input_ids.npy` there and are
        memory-mapped, so the heap holds the example ids and four numbers per example, whatever the token count."""
        stats_before = FormatStats(**vars(formatter.stats))
        tokens = TokenSink(directory)
        ids, lengths, prompt_lengths = [], array("q"), array("i")
        chars, words = array("q"), array("q")
        for record in tqdm(records, desc="tokenize", unit="story", disable=len(records) < PROGRESS_FROM):
            example = formatter.encode(record.prompt, record.story)
            if example is None:
                continue
            ids.append(record.id)
            tokens.append(example["input_ids"])
            lengths.append(len(example["input_ids"]))
            prompt_lengths.append(sum(1 for label in example["labels"] if label == IGNORE_INDEX))
            chars.append(example["story_chars"])
            words.append(example["story_words"])
        arrays = {
            "input_ids": tokens.finish(),
            "offsets": np.concatenate([[0], np.cumsum(np.frombuffer(lengths, dtype=np.int64))]).astype(np.int64),
            "prompt_lengths": np.frombuffer(prompt_lengths, dtype=np.int32).copy(),
            "story_chars": np.frombuffer(chars, dtype=np.int64).copy(),
            "story_words": np.frombuffer(words, dtype=np.int64).copy(),
        }
        stats = FormatStats(**{k: getattr(formatter.stats, k) - getattr(stats_before, k) for k in vars(stats_before)})
        return cls(arrays, ids, stats)

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, index: int) -> int:
        return int(self._offsets[index + 1] - self._offsets[index])

    def __getitem__(self, index: int) -> dict:
        input_ids = self.arrays["input_ids"][self._offsets[index] : self._offsets[index + 1]].tolist()
        masked = int(self.arrays["prompt_lengths"][index])
        return {
            "input_ids": input_ids,
            "labels": [IGNORE_INDEX] * masked + input_ids[masked:],
            "story_chars": int(self.arrays["story_chars"][index]),
            "story_words": int(self.arrays["story_words"][index]),
            "id": self.ids[index],
        }

    def save(self, directory: Path) -> None:
        for name in ARRAYS:
            if name == "input_ids" and (directory / "input_ids.npy").exists():
                continue  # streamed there by encode()
            np.save(directory / f"{name}.npy", self.arrays[name])
        (directory / "meta.json").write_text(
            json.dumps({"ids": self.ids, "stats": vars(self.stats)}, ensure_ascii=False)
        )

    @classmethod
    def load(cls, directory: Path) -> EncodedExamples:
        meta = json.loads((directory / "meta.json").read_text())
        arrays = {name: _load_array(directory / f"{name}.npy") for name in ARRAYS}
        return cls(arrays, meta["ids"], FormatStats(**meta["stats"]))


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot memory-map an empty array
        return np.load(path)


class TokenSink:
    """The token ids of consecutive examples, appended as int32: in memory, or streamed to `<directory>/input_ids.npy`
    (written raw first, then given its .npy header by a chunked copy, since the count is known only at the end)."""

    def __init__(self, directory: Path | None):
        self.directory, self.buffer = directory, array("i")
        self.handle = open(directory / "input_ids.bin", "wb") if directory is not None else None

    def append(self, token_ids: list[int]) -> None:
        self.buffer.extend(token_ids)
        if self.handle is not None and len(self.buffer) >= SINK_CHUNK:
            self._flush()

    def _flush(self) -> None:
        assert self.handle is not None  # only a streaming sink flushes
        self.handle.write(self.buffer.tobytes())
        self.buffer = array("i")

    def finish(self) -> np.ndarray:
        if self.handle is None:
            return np.frombuffer(self.buffer, dtype=np.int32).copy()
        assert self.directory is not None  # a streaming sink has a directory
        self._flush()
        self.handle.close()
        raw, target = self.directory / "input_ids.bin", self.directory / "input_ids.npy"
        count = raw.stat().st_size // 4
        if count == 0:
            np.save(target, np.zeros(0, np.int32))
        else:
            source = np.memmap(raw, dtype=np.int32, mode="r", shape=(count,))
            out = np.lib.format.open_memmap(target, mode="w+", dtype=np.int32, shape=(count,))
            for start in range(0, count, SINK_CHUNK):
                out[start : start + SINK_CHUNK] = source[start : start + SINK_CHUNK]
            out.flush()
            del out, source
        raw.unlink()
        return _load_array(target)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """The tokenizer's definition (a fast tokenizer's full JSON, else its vocabulary), special tokens and chat
    template: equal fingerprints encode equally, wherever the tokenizer was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    flags = {
        key: tokenizer.init_kwargs.get(key)
        for key in ("add_bos_token", "add_eos_token", "legacy", "clean_up_tokenization_spaces")
    }
    return fingerprint(
        type(tokenizer).__name__,
        definition,
        list(tokenizer.all_special_tokens),
        flags,
        getattr(tokenizer, "chat_template", None),
    )


def records_digest(records: list[StoryRecord]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for record in records:
        for part in (record.id, record.prompt, record.story):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x00")
        digest.update(b"\x01")
    return digest.hexdigest()


def cache_key(records: list[StoryRecord], formatter: ExampleFormatter) -> str:
    return fingerprint(
        ENCODER_VERSION,
        tokenizer_fingerprint(formatter.tokenizer),
        PLAIN_TEMPLATE,
        formatter.max_length,
        formatter.overflow,
        formatter.min_story_tokens,
        records_digest(records),
    )


def cached_examples(records: list[StoryRecord], formatter: ExampleFormatter, root: Path | None) -> EncodedExamples:
    """The encoded examples of `records`: read from `root/<key>/` when present, else encoded and stored there
    (`root=None`: encoded, not stored). The formatter's stats count them either way."""
    if root is None:
        return EncodedExamples.encode(records, formatter)
    target = Path(root) / cache_key(records, formatter)
    if (target / "meta.json").exists():
        examples = EncodedExamples.load(target)
        for key, value in vars(examples.stats).items():
            setattr(formatter.stats, key, getattr(formatter.stats, key) + value)
        return examples
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        examples = EncodedExamples.encode(records, formatter, staging)
        examples.save(staging)
        try:
            os.rename(staging, target)  # atomic; when another job got there first, its copy (identical) stays
        except OSError:
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Read back memory-mapped: the arrays live in the page cache, not the heap (the staging copy may be gone).
    return EncodedExamples.load(target) if (target / "meta.json").exists() else examples
