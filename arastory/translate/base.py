"""The translator interface (a batch of English texts in, Arabic texts out) and the usage counters translators keep."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from arastory.errors import ArastoryError
from arastory.llm.retry import RetryStats


class TranslationFailed(Exception):
    """Stands in the output list for a text not translated (after retries); the item is retried on the next run."""


class TranslatorError(ArastoryError):
    """A failure no retry can fix (bad credentials, a rejected request): the run stops with one line."""


@dataclass
class UsageStats(RetryStats):
    """What a run consumed: the client's request/retry counters plus characters, segments and tokens."""

    characters: int = 0
    segments: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    failed_texts: int = 0
    truncated_segments: int = 0


class Translator(ABC):
    """Translate English texts to Arabic. `label` goes into each output row; `identity` guards an output dir."""

    label: str = "translator"

    def __init__(self) -> None:
        self.stats = UsageStats()

    @abstractmethod
    def translate(self, texts: list[str]) -> list[str | TranslationFailed]:
        """One Arabic text (or a TranslationFailed) per input text, in order."""

    def identity(self) -> dict:
        """What makes two runs' translations interchangeable (model, languages, endpoint)."""
        return {"label": self.label}

    def estimated_cost(self) -> float | None:
        """USD for this run's usage, or None when unknown; 0.0 for local models."""
        return None

    def usage(self) -> dict:
        return self.stats.as_dict()
