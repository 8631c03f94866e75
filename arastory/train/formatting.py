"""Turn prompt→story records into token ids and labels: chat template when the tokenizer has one, loss on the story only."""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "{prompt}\n\n### القصة:\n"   # ours: used when the tokenizer has no chat template


@dataclass
class FormatStats:
    kept: int = 0
    truncated: int = 0
    dropped: int = 0

    def as_dict(self) -> dict:
        return {"kept": self.kept, "truncated": self.truncated, "dropped": self.dropped}


@dataclass
class ExampleFormatter:
    """Builds (input_ids, labels) with prompt tokens masked to -100 and EOS appended as a label.

    Over-long examples are cut at `max_length` (`overflow="truncate"`: the story is cut and no EOS is
    learned, since the story did not end there) or skipped (`overflow="drop"`); both are counted.
    An example whose prompt leaves fewer than `min_story_tokens` is always dropped, so no example is fully masked.
    """

    tokenizer: object
    max_length: int = 512
    overflow: str = "truncate"
    min_story_tokens: int = 8
    stats: FormatStats = field(default_factory=FormatStats)

    def __post_init__(self):
        if self.overflow not in ("truncate", "drop"):
            from arastory.errors import ConfigError
            raise ConfigError("data.overflow", f"'{self.overflow}' is not one of: truncate, drop")
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; set one before training")

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, prompt: str) -> str:
        """The text the model sees before the story (also used at generation time)."""
        if self.uses_chat_template:
            messages = [{"role": "user", "content": prompt}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return PLAIN_TEMPLATE.format(prompt=prompt)

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer(self.prompt_text(prompt), add_special_tokens=not self.uses_chat_template)["input_ids"]
        return list(ids)

    def encode(self, prompt: str, story: str) -> dict | None:
        prompt_ids = self.prompt_ids(prompt)
        story_ids = list(self.tokenizer(story, add_special_tokens=False)["input_ids"]) + [self.tokenizer.eos_token_id]
        room = self.max_length - len(prompt_ids)
        if room < self.min_story_tokens:
            self.stats.dropped += 1
            return None
        if len(story_ids) > room:
            if self.overflow == "drop":
                self.stats.dropped += 1
                return None
            story_ids = story_ids[:room]
            self.stats.truncated += 1
        self.stats.kept += 1
        return {"input_ids": prompt_ids + story_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + story_ids}
