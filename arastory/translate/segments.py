"""Split long texts into sentence chunks an MT model can take, and join the translated chunks back.

Paragraph breaks are kept: a text is cut into paragraphs, each paragraph into runs of whole sentences whose
length stays under a budget, and the translations are joined with a space inside a paragraph and the original
break between paragraphs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from arastory.text import sentences

_PARAGRAPH_BREAK = re.compile(r"(\n\s*\n|\n)")


@dataclass
class Segmented:
    """The chunks of one text and the separators that go back between their translations."""

    chunks: list[str]
    separators: list[str]     # len(chunks) - 1 separators

    def join(self, translated: list[str]) -> str:
        out = translated[0].strip() if translated else ""
        for separator, chunk in zip(self.separators, translated[1:]):
            out += separator + chunk.strip()
        return out


def segment(text: str, length: Callable[[str], int], max_length: int) -> Segmented:
    """Chunks of whole sentences, each at most `max_length` by `length` (a sentence longer than that stays alone)."""
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
    packed, current, used = [], items[0], length(items[0])
    for sentence in items[1:]:
        size = length(sentence)
        if used + size <= max_length:
            current, used = f"{current} {sentence}", used + size
        else:
            packed.append(current)
            current, used = sentence, size
    packed.append(current)
    return packed
