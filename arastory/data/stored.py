"""Records whose texts wait in a temporary file: a million training pairs cost their ids and offsets in memory, not
their stories; the texts are read back one record at a time (tokenization reads each once)."""

from __future__ import annotations

import json
import tempfile
from array import array

from arastory.records import StoryRecord


class TextStore:
    """An append-only, anonymous (deleted on close) file of records' texts, one JSON line each, with their offsets."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.offsets = array("q")
        self._last: tuple[int, dict] | None = None

    def add(self, record: StoryRecord) -> StoredStory:
        """`record` spilled to the file: the returned record reads its prompt, story and meta back from there."""
        self.file.seek(0, 2)
        self.offsets.append(self.file.tell())
        self.file.write(
            json.dumps(
                {"prompt": record.prompt, "story": record.story, "features": record.features, "meta": record.meta},
                ensure_ascii=False,
            ).encode("utf-8")
            + b"\n"
        )
        return StoredStory(record.id, record.variety, record.source, self, len(self.offsets) - 1)

    def get(self, index: int) -> dict:
        if self._last is None or self._last[0] != index:  # prompt and story are read one after the other
            self.file.seek(self.offsets[index])
            self._last = (index, json.loads(self.file.readline()))
        return self._last[1]


class StoredStory:
    """A StoryRecord whose prompt, story and meta live in a `TextStore` (id, variety and source in memory)."""

    __slots__ = ("_index", "_store", "id", "source", "variety")

    def __init__(self, id: str, variety: str, source: str, store: TextStore, index: int):
        self.id, self.variety, self.source, self._store, self._index = id, variety, source, store, index

    @property
    def prompt(self) -> str:
        return self._store.get(self._index)["prompt"]

    @property
    def story(self) -> str:
        return self._store.get(self._index)["story"]

    @property
    def features(self) -> dict:
        return self._store.get(self._index)["features"]  # synthetic stories' sampled prompt features ({} for pairs)

    @property
    def meta(self) -> dict:
        return self._store.get(self._index)["meta"]

    def materialize(self) -> StoryRecord:
        return StoryRecord(
            self.id, self.variety, self.prompt, self.story, dict(self.features), self.source, dict(self.meta)
        )

    def to_dict(self) -> dict:
        return self.materialize().to_dict()

    def __eq__(self, other) -> bool:
        return isinstance(other, (StoredStory, StoryRecord)) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # equal records are mutable views: not hashable


# A training story either way: held in memory (StoryRecord) or with its texts on disk (StoredStory); both are read
# through the same attributes.
AnyStory = StoryRecord | StoredStory
