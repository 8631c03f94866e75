"""LLM judge on the study's five criteria (1-5 each): a rubric (ours, or a prompt file), tolerant parsing, bounded
re-asks, and a cache keyed by everything that determines an answer.

Backends: an OpenAI-compatible chat model (`judge=openai`, the study's gpt-4-0125-preview by default) or a local HF
model (`judge=hf`). Every raw answer is kept. A judge's identity (backend, endpoint, model, rubric hash, decoding
parameters; for local models also quantization, dtype and revision) is hashed into `Judge.key`: judgments.jsonl rows
carry it, and the cache lives under cache_dir()/judge/<key>/ (delete that folder, or all of cache_dir()/judge, to
clear it; `judge.cache=false` bypasses it).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arastory.errors import ArastoryError, ConfigError
from arastory.evaluate.criteria import CRITERIA, CRITERION_INFO
from arastory.io import JsonlAppender, atomic_write_json, atomic_write_jsonl, fingerprint, iter_jsonl

if TYPE_CHECKING:
    from arastory.llm import ChatClient
from arastory.llm.client import LLMAuthError
from arastory.llm.resumable import run_resumable
from arastory.paths import cache_dir
from arastory.prompts.varieties import load_variety
from arastory.text import normalize_arabic

log = logging.getLogger(__name__)

ANSWER_FORMATS = ("auto", "json", "lines")
PLACEHOLDERS = ("prompt", "story", "variety_name")

# Our own rubric wording; English instructions, Arabic criterion names. Placeholders: {variety_name}, {prompt}, {story}.
RUBRIC = """\
You are an expert in Arabic, in Modern Standard Arabic and in the Arabic dialects, and you judge children's stories.
A story was written for the instructions below; it must be written in {variety_name}.
Score the story from 1 (very poor) to 5 (excellent) on each criterion:
- fluency (الطلاقة): natural, grammatical, idiomatic language for {variety_name}; no broken or foreign words.
- coherence (التماسك): events follow each other logically and the story reads as one whole.
- instruction_following (اتباع التعليمات): every requirement in the instructions is met (age group, place, ending, \
number of characters, country, dialogue, moral, and the others asked for).
- consistency (الاتساق): characters, names, places and facts stay the same from beginning to end.
- variety (اللهجة): the story is written in {variety_name} throughout, not in another variety \
(drifting into Modern Standard Arabic lowers this score for a dialect story).

Answer with only a JSON object, no other text:
{"fluency": <1-5>, "coherence": <1-5>, "instruction_following": <1-5>, "consistency": <1-5>, "variety": <1-5>}

### Instructions
{prompt}

### Story
{story}"""

# Re-ask messages carry no example numbers, so an echoed example can never pass as scores.
REASK = {
    "json": (
        "Your answer could not be read. Reply with only the JSON object of the five whole-number scores from 1 to 5: "
        '{"fluency": <1-5>, "coherence": <1-5>, "instruction_following": <1-5>, "consistency": <1-5>, "variety": <1-5>}'
    ),
    "lines": (
        "Your answer could not be read. Reply with only the five whole-number scores from 1 to 5, one per line:\n"
        "Fluency: <1-5>\nCoherence: <1-5>\nFollowing Instructions: <1-5>\nConsistency: <1-5>\nVariety: <1-5>"
    ),
}

_CRITERION_OF = {
    re.sub(r"[\s\-]+", "_", normalize_arabic(label)): name
    for name, info in CRITERION_INFO.items()
    for label in info["labels"]
}
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
# "Fluency: 4", "**Fluency:** 4/5", "1. Coherence - 3", "الطلاقة: ٤ من 5"; a score on another scale ("4/10",
# "4 out of 10") is not read as a 1-5 score.
_LINE = re.compile(
    r"^[\s>*_#\-•\d.)]*([^\d:：=\n]+?)[\s*_]*[:：=\-–]\s*[*_]*\s*(\d+(?:\.\d+)?)"
    r"(?!\d|\.\d|\s*(?:/|out\s+of|من)\s*(?!5(?!\d))\d)",
    re.MULTILINE | re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


class JudgeInputTooLong(ArastoryError):
    """A judge prompt that does not fit the local judge's context: the story is skipped and counted, never cut."""


def variety_name(variety: str) -> str:
    try:
        return load_variety(variety).display_name
    except Exception:
        return variety


# ---------------------------------------------------------------------------------------------------------- rubric
class Rubric:
    """A judge prompt template ({prompt}, {story}, optionally {variety_name}) and the answer format to parse."""

    def __init__(self, template: str = RUBRIC, answer_format: str = "auto", source: str = "builtin"):
        self.template, self.answer_format, self.source = template, answer_format, source
        self.reask = REASK["lines" if answer_format == "lines" else "json"]
        # Score sets written out in the template itself (an example answer): an answer repeating one is an echo.
        self.examples = [
            text for text, _ in _json_objects_with_text(_PLACEHOLDER.sub(" ", template)) if _from_mapping(_loads(text))
        ]
        self.hash = fingerprint(template, answer_format, self.reask)

    def messages(self, prompt: str, story: str, variety: str) -> list[dict]:
        values = {"prompt": prompt, "story": story, "variety_name": variety_name(variety)}
        # One pass, so a story that contains "{prompt}" is never substituted again.
        return [{"role": "user", "content": _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.template)}]

    def parse(self, text: str) -> dict | None:
        return parse_judgment(text, self.answer_format, self.examples)


def load_rubric(prompt_file: str | None, answer_format: str = "auto") -> Rubric:
    """The built-in rubric (it asks for JSON; any readable answer counts), or the template in `prompt_file`
    (one-line errors for a bad file)."""
    if answer_format not in ANSWER_FORMATS:
        raise ConfigError("judge.answer_format", f"'{answer_format}' is not one of: {', '.join(ANSWER_FORMATS)}")
    if not prompt_file:
        return Rubric(RUBRIC, answer_format)
    path = Path(prompt_file).expanduser()
    if not path.is_file():
        raise ConfigError("judge.prompt_file", f"'{prompt_file}' is not a file")
    try:
        template = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("judge.prompt_file", f"'{prompt_file}' is not UTF-8 text") from None
    missing = [f"{{{name}}}" for name in ("prompt", "story") if f"{{{name}}}" not in template]
    if missing:
        raise ConfigError(
            "judge.prompt_file",
            f"'{prompt_file}' has no {' and no '.join(missing)} placeholder "
            "(the instructions and the story are put there)",
        )
    return Rubric(template, answer_format, source=str(path))


def judge_messages(prompt: str, story: str, variety: str) -> list[dict]:
    """The built-in rubric's message for one story."""
    return Rubric().messages(prompt, story, variety)


# --------------------------------------------------------------------------------------------------------- parsing
def _criterion(label: str) -> str | None:
    label = normalize_arabic(str(label)).strip().strip("*_#:\"' ").lower()
    return _CRITERION_OF.get(re.sub(r"[\s\-]+", "_", label))


def _score(value) -> int | None:
    if isinstance(value, dict):
        value = next((value[k] for k in ("score", "rating", "value") if k in value), None)
    if isinstance(value, str):
        match = re.match(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*$", value.translate(_DIGITS))
        value = float(match.group(1)) if match else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return None
    return int(value) if 1 <= value <= 5 else None


def _from_mapping(obj) -> dict | None:
    if not isinstance(obj, dict):
        return None
    for nested in ("scores", "criteria", "ratings"):
        if isinstance(obj.get(nested), dict):
            return _from_mapping(obj[nested])
    scores = {}
    for key, value in obj.items():
        name, score = _criterion(key), _score(value)
        if name and score is not None:
            scores[name] = score
    return scores if set(scores) == set(CRITERIA) else None


def _loads(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _json_objects_with_text(text: str):
    """(source text, object) of each JSON object in `text`: fenced blocks first, then any {...} that decodes."""
    decoder = json.JSONDecoder()
    for match in _FENCE.finditer(text):
        obj = _loads(match.group(1))
        if obj is not None:
            yield match.group(1), obj
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        try:
            obj, end = decoder.raw_decode(text[start:])
        except json.JSONDecodeError:
            continue
        yield text[start : start + end], obj


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def parse_judgment(text: str, answer_format: str = "auto", examples: list[str] | tuple = ()) -> dict | None:
    """All five scores from a judge's answer, or None.

    JSON (plain or fenced, also nested under "scores") and/or "Fluency: 4" lines (English or Arabic names, "4/5",
    Arabic digits), as `answer_format` allows. An answer that repeats an example object of the prompt is rejected;
    a score on another scale ("4/10") or not a whole number 1-5 is unreadable.
    """
    text = (text or "").translate(_DIGITS)
    if answer_format in ("auto", "json"):
        echoes = {_squeeze(e) for e in examples}
        for source, obj in _json_objects_with_text(text):
            scores = _from_mapping(obj)
            if scores and _squeeze(source) not in echoes:
                return {name: scores[name] for name in CRITERIA}
    if answer_format in ("auto", "lines"):
        scores = {}
        for label, number in _LINE.findall(text):
            name, score = _criterion(label), _score(number)
            if name and score is not None and name not in scores:
                scores[name] = score
        if set(scores) == set(CRITERIA):
            return {name: scores[name] for name in CRITERIA}
    return None


# -------------------------------------------------------------------------------------------------------- backends
def endpoint_of(base_url: str | None) -> str:
    """The endpoint a client talks to, spelled one way (None is OpenAI's own)."""
    return (base_url or "https://api.openai.com/v1").rstrip("/")


class OpenAIJudgeBackend:
    def __init__(self, client: ChatClient, temperature: float | None = 0.0, max_tokens: int = 300):
        self.client, self.params = client, {"temperature": temperature, "max_tokens": max_tokens}
        self.model = client.model

    def identity(self) -> dict:
        return {
            "backend": "openai",
            "endpoint": endpoint_of(self.client.base_url),
            "model": self.model,
            "params": self.params,
        }

    def answer(self, messages: list[dict]) -> tuple[str, dict]:
        response = self.client.chat(messages, **self.params)
        return response.text, response.usage


class HFJudgeBackend:
    """A local chat model, greedy decoding; loaded on first use (after the evaluated system is freed)."""

    def __init__(
        self,
        model: str,
        dtype: str = "bfloat16",
        quant: str | None = None,
        max_new_tokens: int = 200,
        trust_remote_code: bool = False,
        revision: str | None = None,
    ):
        self.model, self.dtype, self.quant, self.revision = model, dtype, quant, revision
        self.max_new_tokens, self.trust_remote_code = max_new_tokens, trust_remote_code
        self.params = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
        self._loaded: Any = None  # the opened generator, on first use
        self._lock = threading.Lock()

    def identity(self) -> dict:
        from arastory.evaluate.systems import model_revision

        return {
            "backend": "hf",
            "model": self.model,
            "revision": model_revision(self.model, self.revision),
            "quant": self.quant,
            "dtype": self.dtype,
            "params": self.params,
        }

    def _load(self):
        from arastory.evaluate.systems import HFSystem

        spec = HFSystem(
            model=self.model,
            quant=self.quant,
            dtype=self.dtype,
            trust_remote_code=self.trust_remote_code,
            revision=self.revision,
        )
        spec.check()
        self._loaded = spec.open()
        return self._loaded

    def answer(self, messages: list[dict]) -> tuple[str, dict]:
        import torch

        with self._lock:  # one local model, one request at a time
            generator = self._loaded or self._load()
            tokenizer = generator.tokenizer
            if getattr(tokenizer, "chat_template", None):
                ids = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            else:
                ids = tokenizer("\n\n".join(m["content"] for m in messages) + "\n\n")["input_ids"]
            context = getattr(generator.model.config, "max_position_embeddings", None)
            if context and len(ids) + self.max_new_tokens > context:
                raise JudgeInputTooLong(
                    f"judge prompt of {len(ids)} tokens + {self.max_new_tokens} new ones does not "
                    f"fit {self.model}'s {context}-token context"
                )
            ids = torch.tensor([list(ids)], device=generator.model.device)
            with torch.no_grad():
                out = generator.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            new = out[0, ids.shape[1] :]
            return tokenizer.decode(new, skip_special_tokens=True).strip(), {
                "prompt_tokens": ids.shape[1],
                "completion_tokens": int(new.numel()),
            }


# ------------------------------------------------------------------------------------------------------------ judge
def story_key(story: str) -> str:
    return fingerprint("story", story)


class Judge:
    """Scores stories; `max_attempts` answers at most per story (re-asking after an unreadable one); a story still
    unreadable is asked again by later runs, `max_rounds` runs in all."""

    def __init__(
        self,
        backend: OpenAIJudgeBackend | HFJudgeBackend,
        rubric: Rubric | None = None,
        max_attempts: int = 3,
        concurrency: int = 8,
        cache: bool = True,
        max_rounds: int = 2,
        max_story_chars: int = 20000,
    ):
        self.backend, self.rubric = backend, rubric or Rubric()
        self.max_attempts, self.concurrency, self.use_cache = max(1, max_attempts), concurrency, cache
        self.max_rounds, self.max_story_chars = max(1, max_rounds), max_story_chars
        self.model = backend.model
        self.counts = {"requests": 0, "cache_hits": 0, "unparsed": 0, "reasked": 0, "skipped_long": 0}
        self._lock = threading.Lock()
        self._identity: dict | None = None

    @property
    def identity(self) -> dict:
        """Everything that determines an answer (computed once: a local model's revision is looked up)."""
        if self._identity is None:
            self._identity = {
                **self.backend.identity(),
                "rubric": self.rubric.hash,
                "rubric_source": self.rubric.source,
                "answer_format": self.rubric.answer_format,
            }
        return self._identity

    @property
    def key(self) -> str:
        return fingerprint({k: v for k, v in self.identity.items() if k != "rubric_source"})

    def cache_path(self, messages: list[dict]) -> Path:
        digest = fingerprint(messages)
        return cache_dir() / "judge" / self.key / digest[:2] / f"{digest}.json"

    def judge(self, prompt: str, story: str, variety: str) -> dict:
        """{criteria (None when never readable), raw, attempts, usage, cached}."""
        messages = self.rubric.messages(prompt, story, variety)
        path = self.cache_path(messages)
        if self.use_cache and path.exists():
            with self._lock:
                self.counts["cache_hits"] += 1
            return {**json.loads(path.read_text(encoding="utf-8")), "cached": True}
        raw, usage, criteria, conversation = [], {"prompt_tokens": 0, "completion_tokens": 0}, None, list(messages)
        for _ in range(self.max_attempts):
            with self._lock:
                self.counts["requests"] += 1
            text, used = self.backend.answer(conversation)
            raw.append(text)
            for k in usage:
                usage[k] += int(used.get(k, 0) or 0)
            criteria = self.rubric.parse(text)
            if criteria:
                break
            answer, reask = {"role": "assistant", "content": text}, {"role": "user", "content": self.rubric.reask}
            conversation = [*messages, answer, reask]
        result = {"criteria": criteria, "raw": raw, "attempts": len(raw), "usage": usage}
        if criteria is None:
            with self._lock:
                self.counts["unparsed"] += 1
        elif self.use_cache:
            atomic_write_json(path, result)
        return {**result, "cached": False}

    def judge_all(self, generations: list[dict], out_path: str | Path) -> dict:
        """Judge every generation without a final judgment by this judge in `out_path` (judgments.jsonl), several
        at a time, appending rows. Rows of another judge (or of an older story) are moved to judgments.<key>.jsonl;
        unreadable rows are asked again while they have had fewer than `max_rounds` runs. A refused API key (401/403)
        stops at once."""
        out_path = Path(out_path)
        items = [{**g, "id": f"{g['system']}/{g['id']}", "prompt_id": g["id"]} for g in generations]
        earlier = self.settle(out_path, {i["id"]: story_key(i["story"]) for i in items})

        def work(item: dict) -> dict:
            before = earlier.get(item["id"]) or {}
            row = {
                "id": item["id"],
                "system": item["system"],
                "prompt_id": item["prompt_id"],
                "prompt_key": item.get("prompt_key"),
                "story_key": story_key(item["story"]),
                "variety": item["variety"],
                "judge": self.model,
                "judge_key": self.key,
                "rounds": int(before.get("rounds", 1) if before else 0) + 1,
            }
            try:
                if len(item["story"]) > self.max_story_chars:
                    raise JudgeInputTooLong(f"story longer than judge.max_story_chars={self.max_story_chars}")
                result = self.judge(item["prompt"], item["story"], item["variety"])
            except JudgeInputTooLong as error:
                with self._lock:
                    self.counts["skipped_long"] += 1
                return {
                    **row,
                    "criteria": None,
                    "raw": [],
                    "attempts": 0,
                    "parsed": False,
                    "cached": False,
                    "usage": {},
                    "skipped": str(error),
                }
            return {
                **row,
                "criteria": result["criteria"],
                "raw": result["raw"],
                "attempts": result["attempts"],
                "parsed": result["criteria"] is not None,
                "cached": result["cached"],
                "usage": result["usage"],
                **({"earlier_raw": before.get("earlier_raw", []) + before.get("raw", [])} if before else {}),
            }

        stats = run_resumable(
            items,
            "id",
            work,
            out_path,
            concurrency=self.concurrency,
            desc=f"judge ({self.model})",
            fail_fast=(LLMAuthError,),
        )
        return {**stats.as_dict(), **self.counts, "errors": stats.errors[:3]}

    def settle(self, out_path: Path, current: dict[str, str]) -> dict[str, dict]:
        """Leave in `out_path` only final judgments of this judge for the current stories; return the unreadable
        rows to ask again (by id). Everything else is moved, not lost, to judgments.<judge key>.jsonl."""
        if not out_path.exists():
            return {}
        latest: dict[str, dict] = {}
        rows_in_file = 0
        for _, row in iter_jsonl(out_path, on_error="skip"):
            rows_in_file += 1
            if "id" in row:
                latest[row["id"]] = row
        keep, archive, again = [], [], {}
        for row_id, row in latest.items():
            if row.get("judge_key") != self.key or (row_id in current and row.get("story_key") != current[row_id]):
                archive.append(row)
            elif row.get("criteria") is None and not row.get("skipped") and int(row.get("rounds", 1)) < self.max_rounds:
                again[row_id] = row
            else:
                keep.append(row)
        if archive or again or len(latest) != rows_in_file:  # also compacts rows superseded by a re-ask
            for row in archive:
                name = f"judgments.{row.get('judge_key') or 'legacy'}.jsonl"
                with JsonlAppender(out_path.with_name(name)) as old:
                    old.write(row)
            atomic_write_jsonl(out_path, keep)
        if archive:
            others = sorted({str(r.get("judge") or "an unknown judge") for r in archive})
            log.info(
                f"{len(archive)} earlier judgment(s) by {', '.join(others)} or of older stories moved to "
                f"judgments.<key>.jsonl; judging with {self.model} ({self.key})"
            )
        self.counts["reasked"] = len(again)
        return again


def openai_judge(
    model: str = "gpt-4-0125-preview",
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 120.0,
    max_retries: int = 6,
    temperature: float | None = 0.0,
    max_tokens: int = 300,
    max_attempts: int = 3,
    concurrency: int = 8,
    cache: bool = True,
    prompt_file: str | None = None,
    answer_format: str = "auto",
    max_rounds: int = 2,
    max_story_chars: int = 20000,
) -> Judge:
    """`judge=openai`: checks API key and prompt file now, so a mistake stops the run before anything is generated."""
    from arastory.llm import ChatClient

    rubric = load_rubric(prompt_file, answer_format)
    client = ChatClient(
        model,
        base_url,
        api_key_env,
        timeout,
        max_retries,
        key_hint="pick another judge: `judge=hf judge.model=<local model>` (or `judge=none`)",
        config_key="judge",
    )
    return Judge(
        OpenAIJudgeBackend(client, temperature, max_tokens),
        rubric,
        max_attempts,
        concurrency,
        cache,
        max_rounds,
        max_story_chars,
    )


def hf_judge(
    model: str,
    dtype: str = "bfloat16",
    quant: str | None = None,
    max_new_tokens: int = 200,
    trust_remote_code: bool = False,
    max_attempts: int = 3,
    cache: bool = True,
    revision: str | None = None,
    prompt_file: str | None = None,
    answer_format: str = "auto",
    max_rounds: int = 2,
    max_story_chars: int = 20000,
) -> Judge:
    """`judge=hf`: a local model as judge (one request at a time)."""
    if not model:
        raise ConfigError("judge.model", "is empty; name an HF id or a local path of a chat model")
    if quant not in (None, "nf4"):
        raise ConfigError("judge.quant", f"'{quant}' is not one of: null, nf4")
    rubric = load_rubric(prompt_file, answer_format)
    return Judge(
        HFJudgeBackend(model, dtype, quant, max_new_tokens, trust_remote_code, revision),
        rubric,
        max_attempts,
        1,
        cache,
        max_rounds,
        max_story_chars,
    )


def no_judge() -> None:
    """`judge=none`: automatic metrics only."""
    return None
