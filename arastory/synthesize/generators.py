"""Story generators: an OpenAI-compatible chat API (OpenAI, vLLM, TGI) and a local transformers causal LM.

Both append one row per answered prompt to a ledger (`generations.jsonl`: id, text, model, usage, retries)
as answers arrive, and skip prompts already in it, so a killed run resumes without asking twice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tqdm.auto import tqdm

from arastory.io import JsonlAppender
from arastory.llm.resumable import done_keys
from arastory.llm.retry import RETRY_AFTER_MAX
from arastory.plain import plain_dict

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arastory.llm import ChatClient
    from arastory.train.formatting import ExampleFormatter


@dataclass
class GenerationRun:
    """What one invocation did: prompts answered now, already answered before, failed (retried by the next run)."""

    answered: int = 0
    already_done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    requests: dict = field(default_factory=dict)  # client counters (requests, retries, rate limits, ...)


def estimate_tokens(
    prompts: list[dict], chars_per_token: float, expected_completion_tokens: int, system_prompt: str | None = None
) -> dict:
    """Rough token counts for a dry run (no tokenizer download): prompt characters / chars_per_token."""
    overhead = 8 + (len(system_prompt) / chars_per_token if system_prompt else 0)  # per-message framing (ours)
    prompt_tokens = sum(math.ceil(len(p["prompt"]) / chars_per_token + overhead) for p in prompts)
    return {"prompt_tokens": int(prompt_tokens), "completion_tokens": int(expected_completion_tokens * len(prompts))}


KEY_HINT = "any value for a local vLLM/TGI server"
MAX_PROMPT_CHARS = 4000  # ours: the sampled prompts have 200-700 characters; a longer one is not sent (counted)


def too_long(prompt: str, max_prompt_chars: int) -> str | None:
    """Why a prompt is not sent, or None: a bounded request per prompt, whatever the prompts config produced."""
    if len(prompt) > max_prompt_chars:
        return f"prompt has {len(prompt)} characters, over generator.max_prompt_chars={max_prompt_chars}; not sent"
    return None


class StoryGenerator(Protocol):
    """What a synthesis run needs of a generator (`OpenAIGenerator`, `HFGenerator` or a user's `_target_` class)."""

    name: str
    model: str
    chars_per_token: float

    def estimate(self, prompts: list[dict]) -> dict: ...

    def preflight(self) -> None: ...

    def run(self, prompts: list[dict], ledger: Path, desc: str = "stories") -> GenerationRun: ...


class OpenAIGenerator:
    """Chat completions through arastory.llm.ChatClient, `concurrency` requests at a time, resumable."""

    name = "openai"

    def __init__(
        self,
        model: str = "gpt-4-turbo",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        chars_per_token: float = 2.0,
        expected_completion_tokens: int = 700,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
        retry_after_max: float = RETRY_AFTER_MAX,
    ):
        from arastory.errors import ConfigError

        if int(concurrency) < 1:
            raise ConfigError("generator.concurrency", f"must be at least 1, got {concurrency}")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.timeout, self.max_retries = int(concurrency), float(timeout), int(max_retries)
        self.backoff_base, self.backoff_max = float(backoff_base), float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self.system_prompt = system_prompt
        self.params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.chars_per_token, self.expected_completion_tokens = float(chars_per_token), int(expected_completion_tokens)
        self.max_prompt_chars = int(max_prompt_chars)

    def estimate(self, prompts: list[dict]) -> dict:
        return estimate_tokens(prompts, self.chars_per_token, self.expected_completion_tokens, self.system_prompt)

    def preflight(self) -> None:
        """Fail before any work when the API key is missing (the key itself is only read, never kept)."""
        from arastory.llm import require_api_key

        require_api_key(self.api_key_env, KEY_HINT)

    def messages(self, prompt: str) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": prompt}]

    def client(self) -> ChatClient:
        from arastory.llm import ChatClient

        return ChatClient(
            self.model,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            timeout=self.timeout,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            key_hint=KEY_HINT,
            retry_after_max=self.retry_after_max,
            config_key="generator",
            **self.params,
        )

    def run(self, prompts: list[dict], ledger: Path, desc: str = "stories") -> GenerationRun:
        from arastory.llm import run_resumable
        from arastory.llm.client import LLMAuthError, LLMError

        client = self.client()

        def work(item: dict) -> dict:
            reason = too_long(item["prompt"], self.max_prompt_chars)
            if reason:
                raise LLMError(reason)  # counted as failed and logged; never a request
            start = time.perf_counter()
            try:
                response = client.chat(self.messages(item["prompt"]))
            except ValueError as error:  # a body that is not a chat completion (invalid JSON, wrong shape)
                raise LLMError(f"{self.model}: malformed answer ({type(error).__name__}: {str(error)[:120]})") from None
            return {
                "id": item["id"],
                "text": response.text,
                "generator": self.name,
                "model": response.model,
                "usage": response.usage,
                "retries": response.retries,
                "seconds": round(time.perf_counter() - start, 3),
            }

        stats = run_resumable(
            prompts, "id", work, ledger, concurrency=self.concurrency, desc=desc, fail_fast=(LLMAuthError,)
        )
        return GenerationRun(stats.done, stats.already_done, stats.failed, stats.errors, client.stats.as_dict())


class HFGenerator:
    """A local transformers causal LM, batched with left padding; the chat template when the tokenizer has one."""

    name = "hf"

    def __init__(
        self,
        name_or_path: str = "tiny",
        adapter: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 700,
        do_sample: bool = True,
        temperature: float = 0.8,
        top_p: float = 0.95,
        dtype: str = "float32",
        device: str | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
        chars_per_token: float = 2.0,
        max_prompt_chars: int = MAX_PROMPT_CHARS,
    ):
        from arastory.errors import ConfigError

        if int(batch_size) < 1:
            raise ConfigError("generator.batch_size", f"must be at least 1, got {batch_size}")
        self.name_or_path, self.adapter = str(name_or_path), adapter
        self.model = "arastory-tiny" if self.name_or_path == "tiny" else self.name_or_path
        self.batch_size, self.max_new_tokens = int(batch_size), int(max_new_tokens)
        self.sampling = {"do_sample": bool(do_sample), "temperature": temperature, "top_p": top_p}
        self.dtype, self.device, self.trust_remote_code, self.seed = dtype, device, trust_remote_code, int(seed)
        self.chars_per_token, self.max_prompt_chars = float(chars_per_token), int(max_prompt_chars)
        if self.name_or_path != "tiny":
            from arastory.train.model import looks_local

            if looks_local(self.name_or_path) and not Path(self.name_or_path).expanduser().exists():
                raise ConfigError(
                    "generator.name_or_path",
                    f"'{self.name_or_path}' is neither `tiny`, an existing local path nor an HF id (org/name)",
                )

    def estimate(self, prompts: list[dict]) -> dict:
        return estimate_tokens(prompts, self.chars_per_token, self.max_new_tokens)

    def preflight(self) -> None:
        """Nothing to check before loading: the model path was checked when the generator was built."""

    def load(self) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase, ExampleFormatter]:
        """(model, tokenizer, formatter), loaded once per generator (synthesis asks in several rounds)."""
        if getattr(self, "_loaded", None) is None:
            self._loaded = self._load()
        return self._loaded

    def _load(self):
        """(model, tokenizer, formatter): the base (plus a peft adapter when given), tokenizer padding on the left."""
        import torch

        from arastory.train.formatting import ExampleFormatter
        from arastory.train.model import load_model, load_tokenizer

        path = self._resolve_path()
        tokenizer = load_tokenizer(path, trust_remote_code=self.trust_remote_code)
        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
        model: PreTrainedModel | PeftModel = load_model(
            path, dtype=self.dtype, trust_remote_code=self.trust_remote_code
        )
        if self.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, self.adapter)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()  # type: ignore[arg-type]  # transformers' @wraps(nn.Module.to) hides the bound self
        return model, tokenizer, ExampleFormatter(tokenizer)

    def _resolve_path(self) -> str:
        if self.name_or_path != "tiny":
            return self.name_or_path
        from omegaconf import OmegaConf

        from arastory.paths import CONF_DIR
        from arastory.train.tiny import build_tiny_model

        spec = plain_dict(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"]
        return build_tiny_model(**spec)

    def generate_batch(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        formatter: ExampleFormatter,
        prompts: list[str],
    ) -> list[tuple[str, dict]]:
        """Stories for `prompts` with their token usage (prompt tokens without padding, new tokens up to EOS)."""
        import torch

        texts = [formatter.prompt_text(p) for p in prompts]
        batch = tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not formatter.uses_chat_template
        ).to(model.device)
        sampling = self.sampling if self.sampling["do_sample"] else {"do_sample": False}
        with torch.no_grad():
            output = model.generate(  # type: ignore[operator]  # a PeftModel forwards generate to its base model
                **batch,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        results = []
        for row, mask in zip(new_tokens, batch["attention_mask"], strict=False):
            ids = row.tolist()
            if tokenizer.eos_token_id in ids:
                ids = ids[: ids.index(tokenizer.eos_token_id)]
            usage = {"prompt_tokens": int(mask.sum()), "completion_tokens": len(ids)}
            results.append((str(tokenizer.decode(ids, skip_special_tokens=True)).strip(), usage))
        return results

    def run(self, prompts: list[dict], ledger: Path, desc: str = "stories") -> GenerationRun:
        import torch

        finished = done_keys(ledger, "id")
        todo = [p for p in prompts if p["id"] not in finished]
        run = GenerationRun(already_done=len(prompts) - len(todo))
        for item in [p for p in todo if too_long(p["prompt"], self.max_prompt_chars)]:
            todo.remove(item)  # counted as failed, never generated (a 100k-character prompt would exhaust memory)
            run.failed += 1
            run.errors.append(f"{item['id']}: {too_long(item['prompt'], self.max_prompt_chars)}")
        if not todo:
            return run
        model, tokenizer, formatter = self.load()
        with (
            JsonlAppender(ledger) as out,
            tqdm(total=len(prompts), initial=run.already_done, desc=desc, unit="story", dynamic_ncols=True) as bar,
        ):
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                torch.manual_seed(self.seed + start)  # reproducible sampling per batch
                began = time.perf_counter()
                for item, (text, usage) in zip(
                    chunk, self.generate_batch(model, tokenizer, formatter, [p["prompt"] for p in chunk]), strict=False
                ):
                    out.write(
                        {
                            "id": item["id"],
                            "text": text,
                            "generator": self.name,
                            "model": self.model,
                            "usage": usage,
                            "retries": 0,
                            "seconds": round((time.perf_counter() - began) / len(chunk), 3),
                        }
                    )
                run.answered += len(chunk)
                bar.update(len(chunk))
        return run
