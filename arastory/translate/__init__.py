"""English→Arabic translation of story corpora (TinyStories and the like) into parallel records, resumable and batched.

python -m arastory.translate source=data/stories.jsonl out=outputs/translate/mine translator=openai
"""

from arastory.translate.base import TranslationFailed, Translator, TranslatorError, UsageStats
from arastory.translate.pipeline import load_parallel, translate
from arastory.translate.sources import Fields, SourceItem, iter_source

__all__ = [
    "Fields",
    "SourceItem",
    "TranslationFailed",
    "Translator",
    "TranslatorError",
    "UsageStats",
    "iter_source",
    "load_parallel",
    "translate",
]
