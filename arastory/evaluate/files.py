"""`system=file`: stories already written (the project's JSONL or the study's released CSV format) scored as a
system, with no generation; prompt features are read from the released prompts' wording where possible.

    python evaluate.py system=file system.path=../shared/data/arastories out=outputs/eval/released-gpt4 judge=none
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from arastory.errors import ConfigError, DataError
from arastory.prompts.released import RELEASED_CUES
from arastory.records import VARIETIES
from arastory.text import normalize_arabic

if TYPE_CHECKING:
    from collections.abc import Sequence

    from arastory.data.stored import AnyStory

# Opening words of the always-present features' sentences in the released prompts (read from the CSVs), after
# the optional ones in arastory.prompts.released.RELEASED_CUES.
RELEASED_ALWAYS_CUES: dict[str, dict[str, str]] = {
    "msa": {"age": "للأطفال في عمر", "ending": "نهاية القصة", "n_characters": "عدد الشخصيات", "country": "بلد الأحداث"},
    "egy": {
        "age": "للأطفال في عمر",
        "ending": "نهاية الحكاية",
        "n_characters": "عدد الشخصيات",
        "country": "البلد اللي بتحصل فيها",
    },
    "mor": {
        "age": "الدراري في عمر",
        "ending": "النهاية ديال القصة",
        "n_characters": "عدد الأشخاص",
        "country": "بلاد الأحداث",
    },
}
# Released wordings that no variety config or alias spells the same way (read from the CSVs).
RELEASED_WORDING = {
    "place": {"المختبر العلمي": "science_lab", "حديقة الحيوان": "zoo", "الجنان": "park"},
    "country": {"الإمارات العربية المتحدة": "uae"},
}
_AGE = re.compile(r"(\d+)\s*[-–]\s*(\d+)")


def _sentences(prompt: str) -> list[str]:
    return [s.strip(" :") for s in re.split(r"[.\n]", prompt) if s.strip(" :")]


def _after(sentence: str, cue: str) -> str:
    return sentence[sentence.index(cue) + len(cue) :].strip()


def _value_of(feature: str, text: str) -> str | None:
    """The canonical id whose wording (any variety's, or an alias) is exactly `text` after the last "في"/"هي"."""
    from arastory.evaluate.metrics import COUNTRY_ALIASES, PLACE_ALIASES, _varieties

    text = normalize_arabic(re.split(r"\s(?:في|هي|ديال)\s", f" {text}")[-1]).strip()
    wordings = {normalize_arabic(k): v for k, v in RELEASED_WORDING.get(feature, {}).items()}
    for variety in _varieties():
        wordings.update({normalize_arabic(w): value for value, w in variety.values.get(feature, {}).items() if w})
    aliases = {"place": PLACE_ALIASES, "country": COUNTRY_ALIASES}.get(feature, {})
    for value, names in aliases.items():
        wordings.update({normalize_arabic(n): value for n in names if normalize_arabic(n) not in wordings})
    return wordings.get(text)


def released_feature_values(prompt: str, variety: str) -> dict:
    """Canonical feature values of a prompt in the released wording: age, ending, n_characters, country, and when
    asked for, place, season and dialogue (the features the automatic metrics check). Unreadable ones are left out."""
    from arastory.evaluate.metrics import SEASON_ALIASES, mentions

    cues = {**RELEASED_ALWAYS_CUES.get(variety, {}), **RELEASED_CUES.get(variety, {})}
    features: dict = {}
    for sentence in _sentences(prompt):
        for feature, cue in cues.items():
            if cue not in sentence or feature in features:
                continue
            rest = _after(sentence, cue)
            if feature == "age" and (match := _AGE.search(rest)):
                features["age"] = f"{match.group(1)}-{match.group(2)}"
            elif feature == "ending":
                ending = normalize_arabic(rest)
                value = "sad" if "حزين" in ending else "happy" if "سعيد" in ending else None
                if value:
                    features["ending"] = value
            elif feature == "n_characters" and (digits := re.search(r"\d+", rest)):
                features["n_characters"] = int(digits.group())
            elif feature == "dialogue":
                features["dialogue"] = True
            elif feature == "season":
                season = next((s for s, names in SEASON_ALIASES.items() if mentions(rest, names)), None)
                if season:
                    features["season"] = season
            elif feature in ("country", "place") and (value := _value_of(feature, rest)):
                features[feature] = value
    return features


@dataclass
class FileSystem:
    """`system=file`: the stories in `path` (a .jsonl of {id, variety, prompt, story[, features]}, a released-format
    .csv, or a folder of them). `variety` names the variety of CSVs whose file name does not."""

    path: str | None = None
    name: str | None = None
    variety: str | None = None
    n_per_variety: int | None = None  # the first N stories per variety in file order (null: all)
    kind: Literal["file"] = "file"
    _rows: list = field(default_factory=list, repr=False)

    def check(self) -> None:
        from arastory.data.readers import read_stories

        if not self.path:
            raise ConfigError(
                "system.path", "is empty; name a stories file or folder: system=file system.path=<file or folder>"
            )
        path = Path(self.path).expanduser()
        if not path.exists():
            raise ConfigError("system.path", f"'{self.path}' does not exist")
        if self.variety is not None and self.variety not in VARIETIES:
            raise ConfigError("system.variety", f"'{self.variety}' is not one of: {', '.join(VARIETIES)}")
        if self.n_per_variety is not None and int(self.n_per_variety) < 1:
            raise ConfigError("system.n_per_variety", f"must be a positive number or null, got {self.n_per_variety}")
        records = read_stories(path, variety=self.variety)
        seen: set[str] = set()
        per_variety: dict[str, int] = {}
        rows: list[dict] = []
        for record in records:
            if record.variety not in VARIETIES:
                raise DataError(
                    path, f"story '{record.id}': variety '{record.variety}' is not one of: {', '.join(VARIETIES)}"
                )
            if record.id in seen:
                raise DataError(path, f"duplicate story id '{record.id}'")
            seen.add(record.id)
            per_variety[record.variety] = per_variety.get(record.variety, 0) + 1
            if self.n_per_variety is not None and per_variety[record.variety] > int(self.n_per_variety):
                continue
            features = record.features or released_feature_values(record.prompt, record.variety)
            rows.append(
                {
                    "id": record.id,
                    "variety": record.variety,
                    "prompt": record.prompt,
                    "features": features,
                    "story": record.story,
                }
            )
        if not rows:
            raise DataError(path, "no stories")
        self._rows = rows
        self.name = self.name or (path.stem if path.is_file() else path.name)

    def prompts(self) -> list[dict]:
        return [{k: row[k] for k in ("id", "variety", "prompt", "features")} for row in self._rows]

    def identity(self) -> dict:
        from arastory.io import fingerprint

        assert self.path is not None  # check() ran first

        return {
            "kind": "file",
            "name": self.name,
            "path": str(Path(self.path).expanduser().resolve()),
            "content": fingerprint([(r["id"], r["variety"], r["prompt"], r["story"]) for r in self._rows]),
        }

    def open(self) -> FileGenerator:
        assert self.name is not None  # check() ran first and named it
        return FileGenerator(self.name, {row["id"]: row["story"] for row in self._rows}, str(self.path))


class FileGenerator:
    """Hands out the stories read from the file; nothing is generated."""

    kind: Literal["file"] = "file"

    def __init__(self, name: str, stories: dict[str, str], source: str):
        self.name, self.stories = name, stories
        self.meta = {"source": source}

    def story(self, prompt_id: str) -> dict:
        return {"story": self.stories[prompt_id], "meta": {"finish_reason": None, "finished": True}}

    def perplexity(self, records: Sequence[AnyStory]) -> None:
        return None  # no model

    def close(self) -> None:
        pass
