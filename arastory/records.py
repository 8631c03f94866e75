"""Data records shared by every stage: stories (prompt→story in one variety) and parallel EN→AR pairs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

VARIETIES = ("msa", "egy", "mor")
STORY_SOURCES = ("bundled", "released", "synthetic", "translated")


@dataclass
class StoryRecord:
    """One prompt→story example. `features` holds the sampled prompt features (canonical ids)."""

    id: str
    variety: str
    prompt: str
    story: str
    features: dict[str, Any] = field(default_factory=dict)
    source: str = "bundled"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> StoryRecord:
        known = {k: obj[k] for k in ("id", "variety", "prompt", "story", "features", "source", "meta") if k in obj}
        return cls(**known)


@dataclass
class ParallelRecord:
    """An English story with its Arabic translation; `flaw` labels planted bad translations (None = faithful)."""

    id: str
    en_prompt: str
    en_story: str
    ar_prompt: str
    ar_story: str
    translator: str = "human"
    flaw: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict) -> ParallelRecord:
        keys = ("id", "en_prompt", "en_story", "ar_prompt", "ar_story", "translator", "flaw", "meta")
        return cls(**{k: obj[k] for k in keys if k in obj})

    def as_story(self) -> StoryRecord:
        """The Arabic side as an MSA training example."""
        return StoryRecord(
            id=self.id,
            variety="msa",
            prompt=self.ar_prompt,
            story=self.ar_story,
            source="translated",
            meta={"translator": self.translator, **self.meta},
        )
