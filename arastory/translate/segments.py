"""Split long texts into sentence chunks an MT model can take, and join the translated chunks back.

Paragraph breaks are kept: a text is cut into paragraphs, each paragraph into runs of whole sentences whose
length stays under a budget, and the translations are joined with a space inside a paragraph and the original
break between paragraphs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from arastory.text import sentences
from arastory.translate.base import TranslationFailed

_PARAGRAPH_BREAK = re.compile(r"(\n\s*\n|\n)")


@dataclass
class Segmented:
    """The chunks of one text and the separators that go back between their translations."""

    chunks: list[str]
    separators: list[str]  # len(chunks) - 1 separators

    def join(self, translated: list[str]) -> str:
        out = translated[0].strip() if translated else ""
        for separator, chunk in zip(self.separators, translated[1:], strict=False):
            out += separator + chunk.strip()
        return out


def segment(text: str, length: Callable[[str], int], max_length: int) -> Segmented:
    """Chunks of whole sentences, each at most `max_length` by `length`; a sentence longer than that is cut at word
    boundaries (a word longer than that, at characters), so no chunk is ever silently truncated by the model."""
    chunks: list[str] = []
    separators: list[str] = []
    parts = _PARAGRAPH_BREAK.split(text.strip())
    for i in range(0, len(parts), 2):
        paragraph = parts[i].strip()
        if not paragraph:
            continue
        if chunks:
            separators.append("\n\n" if i > 0 and "\n\n" in parts[i - 1].replace(" ", "") else "\n")
        pieces = _pack(sentences(paragraph), length, max_length)
        chunks.append(pieces[0])
        for piece in pieces[1:]:
            separators.append(" ")
            chunks.append(piece)
    if not chunks:
        chunks = [text.strip()]
    return Segmented(chunks, separators)


def _pack(items: list[str], length: Callable[[str], int], max_length: int) -> list[str]:
    """Greedy: add sentences to the current chunk while the summed lengths stay within the budget.

    Lengths are measured once per sentence and added (tokens are close to additive), not re-measured per chunk.
    """
    if not items:
        return [""]
    measured = []
    for item in items:
        size = length(item)
        measured += [(item, size)] if size <= max_length else _cut(item, length, max_length)
    packed, (current, used) = [], measured[0]
    for sentence, size in measured[1:]:
        if used + 1 + size <= max_length:  # 1: the space between them (a character; at most a token)
            current, used = f"{current} {sentence}", used + 1 + size
        else:
            packed.append(current)
            current, used = sentence, size
    packed.append(current)
    return packed


def _cut(sentence: str, length: Callable[[str], int], max_length: int) -> list[tuple[str, int]]:
    """An over-long sentence as (piece, length) runs of whole words within the budget; over-long words by characters."""
    pieces: list[tuple[str, int]] = []
    for word in sentence.split():
        size = length(word)
        if size > max_length:  # no spaces to cut at (or a giant token run): cut by characters, proportionally
            step = max(1, len(word) * max_length // size)
            pieces += [(word[i : i + step], length(word[i : i + step])) for i in range(0, len(word), step)]
        else:
            pieces.append((word, size))
    runs, (current, used) = [], pieces[0]
    for word, size in pieces[1:]:
        if used + 1 + size <= max_length:
            current, used = f"{current} {word}", used + 1 + size
        else:
            runs.append((current, used))
            current, used = word, size
    runs.append((current, used))
    return runs


def split_for_requests(
    texts: list[str], max_length: int, length: Callable[[str], int] = len
) -> tuple[list[str], list[Segmented | None]]:
    """(every chunk to send, each text's layout or None when it goes whole): texts over the budget go in pieces."""
    layouts = [segment(text, length, max_length) if length(text) > max_length else None for text in texts]
    chunks = [c for text, layout in zip(texts, layouts, strict=False) for c in (layout.chunks if layout else [text])]
    return chunks, layouts


def join_translations(
    layouts: list[Segmented | None], translated: list[str | TranslationFailed]
) -> list[str | TranslationFailed]:
    """Each text's translation from its chunks' (in order); the first failure stands for the whole text."""
    out: list[str | TranslationFailed] = []
    start = 0
    for layout in layouts:
        parts = translated[start : start + (len(layout.chunks) if layout else 1)]
        start += len(parts)
        texts = [p for p in parts if isinstance(p, str)]
        failure = next((p for p in parts if not isinstance(p, str)), None)
        out.append(failure if failure is not None else (layout.join(texts) if layout else texts[0]))
    return out
