"""Turn prompt→story records into token ids and labels: the story is the assistant turn of the tokenizer's chat
template (a plain template when it has none); the loss covers the story and its end of turn only."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from arastory.data.stored import AnyStory

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "{prompt}\n\n### القصة:\n"  # ours: used when the tokenizer has no chat template
LENGTH_STEP = 64  # data.max_length=auto rounds up to a multiple of this
LOST_EOS_WARN = 0.01  # warn when more than 1% of a set's examples lose their end of story to truncation


@dataclass
class FormatStats:
    kept: int = 0
    truncated: int = 0  # kept, but cut at max_length: these never learn where the story ends
    dropped: int = 0

    def as_dict(self) -> dict:
        return {"kept": self.kept, "truncated": self.truncated, "dropped": self.dropped, "lost_eos": self.truncated}

    def warning(self, what: str, max_length: int) -> str | None:
        """One line when more than 1% of the examples lose their end of story (EOS / end of turn)."""
        total = self.kept + self.dropped
        if not total or self.truncated <= LOST_EOS_WARN * total:
            return None
        return (
            f"[arastory] warning: {self.truncated} of {total} {what} examples ({self.truncated / total:.0%}) "
            f"are longer than data.max_length={max_length} and lose their end of story (EOS); raise data.max_length "
            f"or set data.max_length=auto"
        )


@dataclass
class ExampleFormatter:
    """Builds (input_ids, labels) with the prompt masked to -100 and the story plus its end of turn as labels.

    With a chat template, the prompt is the user turn plus the generation prompt, and the labels are the assistant
    turn as the template renders it: the story and what the template emits after it up to and including the first
    special token (Llama-2 ` </s>`, ChatML `<|im_end|>`, Llama-3 `<|eot_id|>`); text after that token (ChatML's
    newline) belongs to no turn and is left out. A template that ends the turn without a special token gets EOS.
    Over-long examples are cut at `max_length` (`overflow="truncate"`: the story is cut and no end of turn is
    learned, since the story did not end there) or skipped (`overflow="drop"`); both are counted. An example whose
    prompt leaves fewer than `min_story_tokens` is always dropped, so no example is fully masked.
    """

    tokenizer: PreTrainedTokenizerBase
    max_length: int | str | None = 1024  # "auto" or None: no limit here (the recipe resolves auto from the data)
    overflow: str = "truncate"
    min_story_tokens: int = 8
    stats: FormatStats = field(default_factory=FormatStats)

    @property
    def resolved_max_length(self) -> int:
        """`max_length` once `auto` was resolved from the data (the recipe does it before training reads it)."""
        if not isinstance(self.max_length, int):
            raise TypeError(f"max_length is {self.max_length!r}: resolve `auto` (auto_max_length) first")
        return self.max_length

    def __post_init__(self):
        if self.overflow not in ("truncate", "drop"):
            from arastory.errors import ConfigError

            raise ConfigError("data.overflow", f"'{self.overflow}' is not one of: truncate, drop")
        if self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; set one before training")
        decoder = getattr(self.tokenizer, "added_tokens_decoder", {})
        self._special_ids = set(self.tokenizer.all_special_ids) | {i for i, t in decoder.items() if t.special}

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_text(self, prompt: str) -> str:
        """The text the model sees before the story (also used at generation time)."""
        if self.uses_chat_template:
            messages = [{"role": "user", "content": prompt}]
            return self._render_chat(messages, add_generation_prompt=True)
        return PLAIN_TEMPLATE.format(prompt=prompt)

    def _render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        if not isinstance(text, str):
            raise TypeError(f"apply_chat_template(tokenize=False) gave {type(text).__name__}, not text")
        return text

    def prompt_ids(self, prompt: str) -> list[int]:
        ids = self.tokenizer(self.prompt_text(prompt), add_special_tokens=not self.uses_chat_template)["input_ids"]
        return list(ids)

    def assistant_turn(self, prompt: str, story: str) -> tuple[str, str]:
        """(story as rendered, text after it up to the end of the turn) for the story as the assistant's answer."""
        if not self.uses_chat_template:
            return story, ""
        head = self.prompt_text(prompt)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": story}]
        full = self._render_chat(messages)
        if not full.startswith(head):
            raise ValueError(
                "the chat template renders the user turn differently when an answer follows; "
                "it cannot be trained as prompt + completion"
            )
        turn = full[len(head) :]
        at = turn.find(story.strip())
        if at < 0:
            raise ValueError(
                "the chat template changes the assistant's text; the story cannot be found in its rendering"
            )
        end = at + len(story.strip())
        return turn[:end], turn[end:]

    def end_of_turn_ids(self, tail: str) -> list[int]:
        """Tokens of the template's tail up to and including its first special token; EOS when it has none."""
        ids = list(self.tokenizer(tail, add_special_tokens=False)["input_ids"]) if tail else []
        for k, token in enumerate(ids):
            if token in self._special_ids:
                return ids[: k + 1]
        return [*ids, self.tokenizer.eos_token_id]

    @property
    def stop_token_ids(self) -> list[int]:
        """Token ids that end a generated story: EOS and the chat template's end-of-turn token."""
        stops = [self.tokenizer.eos_token_id]
        if self.uses_chat_template:
            stops += [t for t in self.end_of_turn_ids(self.assistant_turn("?", "!")[1]) if t in self._special_ids]
        return list(dict.fromkeys(stops))

    def token_ids(self, prompt: str, story: str) -> tuple[list[int], list[int]]:
        """(prompt ids, story + end-of-turn ids), untruncated."""
        content, tail = self.assistant_turn(prompt, story)
        story_ids = list(self.tokenizer(content, add_special_tokens=False)["input_ids"]) + self.end_of_turn_ids(tail)
        return self.prompt_ids(prompt), story_ids

    def example_length(self, prompt: str, story: str) -> int:
        prompt_ids, story_ids = self.token_ids(prompt, story)
        return len(prompt_ids) + len(story_ids)

    def encode(self, prompt: str, story: str) -> dict | None:
        """input_ids and labels, plus the characters and words of the story text the labels cover (the whole story
        unless truncated), so bits per character / per word are the NLL of the scored tokens over that text."""
        prompt_ids, story_ids = self.token_ids(prompt, story)
        limit = self.max_length if isinstance(self.max_length, int) else sys.maxsize
        room = limit - len(prompt_ids)
        if room < self.min_story_tokens:
            self.stats.dropped += 1
            return None
        scored = story
        if len(story_ids) > room:
            if self.overflow == "drop":
                self.stats.dropped += 1
                return None
            story_ids = story_ids[:room]
            scored = str(self.tokenizer.decode(story_ids, skip_special_tokens=True))  # one sequence: one string
            self.stats.truncated += 1
        self.stats.kept += 1
        return {
            "input_ids": prompt_ids + story_ids,
            "labels": [IGNORE_INDEX] * len(prompt_ids) + story_ids,
            "story_chars": len(scored),
            "story_words": len(scored.split()),
        }


def auto_max_length(formatter: ExampleFormatter, records: Iterable[AnyStory], context: int | None) -> int:
    """`data.max_length=auto`: the longest example (prompt + story + end of turn) rounded up to a multiple of 64,
    capped at the model's context length, so no example is truncated unless the model cannot take it whole."""
    longest = max((formatter.example_length(r.prompt, r.story) for r in records), default=LENGTH_STEP)
    rounded = -(-longest // LENGTH_STEP) * LENGTH_STEP
    return min(rounded, context) if context else rounded
