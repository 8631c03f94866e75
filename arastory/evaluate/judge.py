"""LLM judge on the study's five criteria (1-5 each): our rubric, tolerant parsing, bounded re-asks, a content cache.

Backends: an OpenAI-compatible chat model (`judge=openai`, the study's gpt-4-0125-preview by default) or a local HF
model (`judge=hf`). Every raw answer is kept. A judgment is cached under cache_dir()/judge by a hash of the judge
model, its settings and the full messages (rubric + variety + prompt + story), so a rerun never pays twice.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from arastory.io import atomic_write_json, fingerprint
from arastory.llm.resumable import run_resumable
from arastory.paths import cache_dir
from arastory.prompts.varieties import load_variety
from arastory.text import normalize_arabic

CRITERIA = ("fluency", "coherence", "instruction_following", "consistency", "variety")

# Our own rubric wording (the study's prompt was not released in full); English instructions, Arabic criterion names.
RUBRIC = """You are an expert in Arabic, in Modern Standard Arabic and in the Arabic dialects, and you judge children's stories.
A story was written for the instructions below; it must be written in {variety_name}.
Score the story from 1 (very poor) to 5 (excellent) on each criterion:
- fluency (الطلاقة): natural, grammatical, idiomatic language for {variety_name}; no broken or foreign words.
- coherence (التماسك): events follow each other logically and the story reads as one whole.
- instruction_following (اتباع التعليمات): every requirement in the instructions is met (age group, place, ending, number of characters, country, dialogue, moral, and the others asked for).
- consistency (الاتساق): characters, names, places and facts stay the same from beginning to end.
- variety (اللهجة): the story is written in {variety_name} throughout, not in another variety (drifting into Modern Standard Arabic lowers this score for a dialect story).

Answer with only a JSON object, no other text:
{{"fluency": <1-5>, "coherence": <1-5>, "instruction_following": <1-5>, "consistency": <1-5>, "variety": <1-5>}}

### Instructions
{prompt}

### Story
{story}"""

REASK = ('Your answer could not be read. Reply with only the JSON object, for example: '
         '{"fluency": 3, "coherence": 4, "instruction_following": 2, "consistency": 5, "variety": 4}')

_ALIASES = {
    "fluency": ["fluency", "الطلاقه", "طلاقه"],
    "coherence": ["coherence", "التماسك", "تماسك"],
    "instruction_following": ["instruction_following", "instructions_following", "following_instructions",
                              "instruction_adherence", "instructions", "اتباع_التعليمات", "اتباع التعليمات",
                              "الالتزام_بالتعليمات", "الالتزام بالتعليمات"],
    "consistency": ["consistency", "الاتساق", "اتساق"],
    "variety": ["variety", "dialect", "language_variety", "اللهجه", "لهجه", "التنوع اللغوي"],
}
_CRITERION_OF = {re.sub(r"[\s\-]+", "_", normalize_arabic(alias)): name for name, aliases in _ALIASES.items() for alias in aliases}
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_LINE = re.compile(r"^[\s>*_#\-•\d.)]*([^\d:：=\n]+?)[\s*_]*[:：=\-–]\s*[*_]*\s*(\d+(?:\.\d+)?)\s*(?:/\s*5|out of 5|من\s*5)?",
                   re.MULTILINE)


def variety_name(variety: str) -> str:
    try:
        return load_variety(variety).display_name
    except Exception:  # noqa: BLE001 - an unknown variety is named as given
        return variety


def judge_messages(prompt: str, story: str, variety: str) -> list[dict]:
    return [{"role": "user", "content": RUBRIC.format(variety_name=variety_name(variety), prompt=prompt, story=story)}]


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


def _json_objects(text: str):
    decoder = json.JSONDecoder()
    for match in _FENCE.finditer(text):
        try:
            yield json.loads(match.group(1))
        except json.JSONDecodeError:
            pass
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        try:
            yield decoder.raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            continue


def parse_judgment(text: str) -> dict | None:
    """All five scores from a judge's answer: JSON (plain or fenced), or "Fluency: 4/5" lines (English or Arabic names)."""
    text = (text or "").translate(_DIGITS)
    for obj in _json_objects(text):
        scores = _from_mapping(obj)
        if scores:
            return {name: scores[name] for name in CRITERIA}
    scores = {}
    for label, number in _LINE.findall(text):
        name, score = _criterion(label), _score(number)
        if name and score is not None and name not in scores:
            scores[name] = score
    return {name: scores[name] for name in CRITERIA} if set(scores) == set(CRITERIA) else None


# -------------------------------------------------------------------------------------------------------- backends
class OpenAIJudgeBackend:
    def __init__(self, client, temperature: float = 0.0, max_tokens: int = 300):
        self.client, self.params = client, {"temperature": temperature, "max_tokens": max_tokens}
        self.model = client.model

    def answer(self, messages: list[dict]) -> tuple[str, dict]:
        response = self.client.chat(messages, **self.params)
        return response.text, response.usage


class HFJudgeBackend:
    """A local chat model, greedy decoding; loaded on first use (after the evaluated system is freed)."""

    def __init__(self, model: str, dtype: str = "bfloat16", quant: str | None = None, max_new_tokens: int = 200,
                 trust_remote_code: bool = False):
        self.model, self.dtype, self.quant = model, dtype, quant
        self.max_new_tokens, self.trust_remote_code = max_new_tokens, trust_remote_code
        self.params = {"temperature": 0.0, "max_new_tokens": max_new_tokens}
        self._loaded, self._lock = None, threading.Lock()

    def _load(self):
        from arastory.evaluate.systems import HFSystem

        spec = HFSystem(model=self.model, quant=self.quant, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
        spec.check()
        self._loaded = spec.open()
        return self._loaded

    def answer(self, messages: list[dict]) -> tuple[str, dict]:
        import torch

        with self._lock:  # one local model, one request at a time
            generator = self._loaded or self._load()
            tokenizer = generator.tokenizer
            if getattr(tokenizer, "chat_template", None):
                ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            else:
                ids = tokenizer("\n\n".join(m["content"] for m in messages) + "\n\n")["input_ids"]
            ids = torch.tensor([list(ids)], device=generator.model.device)
            with torch.no_grad():
                out = generator.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                               max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
            new = out[0, ids.shape[1]:]
            return tokenizer.decode(new, skip_special_tokens=True).strip(), {"prompt_tokens": ids.shape[1],
                                                                             "completion_tokens": int(new.numel())}


# ------------------------------------------------------------------------------------------------------------ judge
class Judge:
    """Scores stories; `max_attempts` answers at most per story (re-asking after an unreadable one)."""

    def __init__(self, backend, max_attempts: int = 3, concurrency: int = 8, cache: bool = True):
        self.backend, self.max_attempts, self.concurrency, self.use_cache = backend, max(1, max_attempts), concurrency, cache
        self.model = backend.model
        self.counts = {"requests": 0, "cache_hits": 0, "unparsed": 0}
        self._lock = threading.Lock()

    def cache_path(self, messages: list[dict]) -> Path:
        key = fingerprint(type(self.backend).__name__, self.model, self.backend.params, self.max_attempts, messages)
        return cache_dir() / "judge" / key[:2] / f"{key}.json"

    def judge(self, prompt: str, story: str, variety: str) -> dict:
        """{criteria (None when never readable), raw, attempts, usage, cached}."""
        messages = judge_messages(prompt, story, variety)
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
            criteria = parse_judgment(text)
            if criteria:
                break
            conversation = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": REASK}]
        result = {"criteria": criteria, "raw": raw, "attempts": len(raw), "usage": usage}
        if criteria is None:
            with self._lock:
                self.counts["unparsed"] += 1
        elif self.use_cache:
            atomic_write_json(path, result)
        return {**result, "cached": False}

    def judge_all(self, generations: list[dict], out_path: str | Path) -> dict:
        """Judge every generation not yet in `out_path` (judgments.jsonl), several at a time, appending rows."""
        items = [{**g, "id": f"{g['system']}/{g['id']}", "prompt_id": g["id"]} for g in generations]

        def work(item: dict) -> dict:
            result = self.judge(item["prompt"], item["story"], item["variety"])
            return {"id": item["id"], "system": item["system"], "prompt_id": item["prompt_id"], "variety": item["variety"],
                    "criteria": result["criteria"], "raw": result["raw"], "judge": self.model, "attempts": result["attempts"],
                    "parsed": result["criteria"] is not None, "cached": result["cached"], "usage": result["usage"]}

        stats = run_resumable(items, "id", work, out_path, concurrency=self.concurrency, desc=f"judge ({self.model})")
        return {**stats.as_dict(), **self.counts}


def openai_judge(model: str = "gpt-4-0125-preview", base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 120.0, max_retries: int = 6, temperature: float = 0.0, max_tokens: int = 300,
                 max_attempts: int = 3, concurrency: int = 8, cache: bool = True) -> Judge:
    """`judge=openai`: checks the API key now, so a missing key stops the run before anything is generated."""
    from arastory.llm import ChatClient

    client = ChatClient(model, base_url, api_key_env, timeout, max_retries,
                        key_hint="pick another judge: `judge=hf judge.model=<local model>` (or `judge=none`)")
    return Judge(OpenAIJudgeBackend(client, temperature, max_tokens), max_attempts, concurrency, cache)


def hf_judge(model: str, dtype: str = "bfloat16", quant: str | None = None, max_new_tokens: int = 200,
             trust_remote_code: bool = False, max_attempts: int = 3, cache: bool = True) -> Judge:
    """`judge=hf`: a local model as judge (one request at a time)."""
    from arastory.errors import ConfigError

    if not model:
        raise ConfigError("judge.model", "is empty; name an HF id or a local path of a chat model")
    return Judge(HFJudgeBackend(model, dtype, quant, max_new_tokens, trust_remote_code), max_attempts, 1, cache)


def no_judge() -> None:
    """`judge=none`: automatic metrics only."""
    return None
