"""Translate with any OpenAI-compatible chat endpoint (OpenAI, vLLM, TGI) through arastory.llm.ChatClient:
one request per text (a text over `max_chars_per_request` in sentence chunks, joined back), several in flight,
retries counted by the client, cost from its token counts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from arastory.errors import ConfigError
from arastory.llm import ChatClient, LLMError, estimate_cost
from arastory.llm.client import LLMAuthError
from arastory.llm.retry import RETRY_AFTER_MAX
from arastory.translate.base import TranslationFailed, Translator, TranslatorError
from arastory.translate.segments import join_translations, split_for_requests

# Ours: the study used Google Translate; this instruction asks for the same target, Modern Standard Arabic.
DEFAULT_INSTRUCTION = (
    "You are a professional English-to-Arabic translator of children's stories. Translate the user's text into "
    "Modern Standard Arabic (الفصحى), not any dialect. Keep the meaning, the names, the tone and the paragraph "
    "breaks; do not add, drop or explain anything. Answer with the Arabic translation only."
)


class LLMTranslator(Translator):
    """`base_url` and `model` pick the endpoint; the key comes from the environment variable `api_key_env`."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        instruction: str = DEFAULT_INSTRUCTION,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_chars_per_request: int = 4000,
        retry_after_max: float = RETRY_AFTER_MAX,
    ):
        super().__init__()
        if int(max_chars_per_request) < 100:
            raise ConfigError("translator.max_chars_per_request", f"must be at least 100, got {max_chars_per_request}")
        self.model, self.base_url, self.instruction = model, base_url, instruction
        self.concurrency, self.max_chars = max(1, concurrency), int(max_chars_per_request)
        self.client = ChatClient(
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            key_hint="use translator=hf",
            retry_after_max=retry_after_max,
            config_key="translator",
            temperature=temperature,
            max_tokens=max_tokens,
        )
        self.label = f"openai:{model}"

    def identity(self) -> dict:
        return {"label": self.label, "model": self.model, "base_url": self.base_url}

    def estimated_cost(self) -> float | None:
        return estimate_cost(self.model, self.stats.input_tokens, self.stats.output_tokens)

    def translate(self, texts: list[str]) -> list[str | TranslationFailed]:
        chunks, layouts = split_for_requests(texts, self.max_chars)
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks) or 1))
        try:
            return join_translations(layouts, list(pool.map(self._one, chunks)))
        except TranslatorError:
            pool.shutdown(wait=True, cancel_futures=True)  # send nothing more once the key is refused
            raise
        finally:
            pool.shutdown(wait=True)

    def _one(self, text: str) -> str | TranslationFailed:
        try:
            response = self.client.chat(
                [{"role": "system", "content": self.instruction}, {"role": "user", "content": text}]
            )
        except LLMAuthError as error:
            raise TranslatorError(f"translation stopped: {error}") from None  # every other request would fail too
        except LLMError as error:
            self.stats.add(failed_texts=1)
            return TranslationFailed(str(error))
        self.stats.add(
            characters=len(text),
            segments=1,
            input_tokens=response.usage.get("prompt_tokens", 0),
            output_tokens=response.usage.get("completion_tokens", 0),
        )
        return response.text.strip()

    def usage(self) -> dict:
        """Our character and token counts plus the client's request and retry counters (kept across threads)."""
        client = self.client.stats.as_dict()
        retry_counts = ("requests", "retries", "rate_limited", "server_errors", "timeouts", "connection_errors")
        return {**self.stats.as_dict(), **{name: client[name] for name in retry_counts}}
