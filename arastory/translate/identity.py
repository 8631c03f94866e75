"""A benchmark and testing translator, not a translation: English letters mapped one to one onto Arabic letters.

Deterministic, instant and offline, so the translate pipeline (streaming, resume, shards, merge) can be measured and
tested on a million items without a model or an API: `translator=identity`. Its output is Arabic script (it passes
the filter's script checks) but carries no meaning; never train on it.
"""

from __future__ import annotations

from arastory.translate.base import TranslationFailed, Translator

LETTERS = dict(zip("abcdefghijklmnopqrstuvwxyz", "اببتثجحخدذرزسشصضطظعغفقكلمن", strict=False))


class IdentityTranslator(Translator):
    label = "identity"

    def __init__(self, name: str = "identity"):
        super().__init__()
        self._table = str.maketrans({**LETTERS, **{k.upper(): v for k, v in LETTERS.items()}})

    def translate(self, texts: list[str]) -> list[str | TranslationFailed]:
        self.stats.segments += len(texts)
        self.stats.characters += sum(len(t) for t in texts)
        return [text.translate(self._table) for text in texts]

    def identity(self) -> dict:
        return {"label": self.label, "transform": "latin-letters-to-arabic-v1", "benchmark_only": True}

    def estimated_cost(self) -> float:
        return 0.0
