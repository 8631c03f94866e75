"""An OpenAI-compatible chat client (the official `openai` package) with bounded retries, backoff that honours
Retry-After, timeouts, and counters — for OpenAI itself, vLLM, TGI or any compatible server via `base_url`."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field

import openai

from arastory.errors import ArastoryError, ConfigError


TIMEOUT_GROWTH = 8   # ours: the longest a retry waits, as a multiple of `timeout`


class LLMError(ArastoryError):
    """A request that still failed after all retries (or failed in a way retrying cannot fix)."""


class LLMAuthError(LLMError):
    """The server refused the API key (401) or the access (403): every other request would fail too, so batch jobs stop."""


@dataclass
class LLMResponse:
    text: str
    model: str
    usage: dict = field(default_factory=dict)   # prompt_tokens, completion_tokens
    retries: int = 0
    finish_reason: str | None = None            # "stop", "length" (cut at max_tokens), ... as the server says


@dataclass
class RetryStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def require_api_key(env_var: str, hint: str = "") -> str:
    """The key from the environment, or a one-line ConfigError saying how to set it."""
    key = os.environ.get(env_var, "").strip()
    if not key:
        raise ConfigError(env_var, f"is not set: `export {env_var}=...`" + (f", or {hint}" if hint else ""))
    return key


class ChatClient:
    """Chat completions with our own retry loop (the SDK's is turned off so every retry is counted)."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 6, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 key_hint: str = "", **default_params):
        api_key = require_api_key(api_key_env, key_hint)
        self.model, self.base_url, self.timeout = model, base_url, float(timeout)
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self.default_params = {k: v for k, v in default_params.items() if v is not None}
        self.stats = RetryStats()
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def chat(self, messages: list[dict], **params) -> LLMResponse:
        """One answer, retrying 429/5xx/timeouts/dropped connections (this is the only retry layer: the SDK's own
        is off). A request that timed out may still be answered and billed by the server, so each retry after a
        timeout waits twice as long (up to TIMEOUT_GROWTH x): a slow server is not asked again and again."""
        params = {**self.default_params, **{k: v for k, v in params.items() if v is not None}}
        timeouts = 0
        for attempt in range(self.max_retries + 1):
            self.stats.add(requests=1)
            try:
                completion = self._client.chat.completions.create(
                    model=self.model, messages=messages, timeout=self.timeout * min(TIMEOUT_GROWTH, 2 ** timeouts),
                    **params)
                return self._response(completion, attempt)
            except openai.RateLimitError as error:
                self.stats.add(rate_limited=1)
                wait = _retry_after(error) or self._backoff(attempt)
            except openai.APITimeoutError:
                self.stats.add(timeouts=1)
                timeouts += 1
                wait = self._backoff(attempt)
            except openai.APIConnectionError:
                self.stats.add(connection_errors=1)
                wait = self._backoff(attempt)
            except openai.InternalServerError as error:
                self.stats.add(server_errors=1)
                wait = _retry_after(error) or self._backoff(attempt)
            except openai.AuthenticationError as error:
                raise LLMAuthError(f"{self._where()}: authentication failed ({error.status_code}); check the API key") from None
            except openai.PermissionDeniedError as error:
                raise LLMAuthError(f"{self._where()}: access denied ({error.status_code}); check the API key's "
                                   "permissions for this model") from None
            except openai.APIStatusError as error:
                raise LLMError(f"{self._where()}: request rejected ({error.status_code}): {_short(error)}") from None
            if attempt < self.max_retries:
                self.stats.add(retries=1)
                time.sleep(min(wait, self.backoff_max))
        self.stats.add(failed=1)
        raise LLMError(f"{self._where()}: gave up after {self.max_retries + 1} attempts (rate limits, server errors or timeouts)")

    def _response(self, completion, attempt: int) -> LLMResponse:
        try:
            text = completion.choices[0].message.content
            finish_reason = completion.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError):
            text = finish_reason = None
        if text is None:
            raise LLMError(f"{self._where()}: the answer has no message content")
        usage = completion.usage
        tokens = {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                  "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}
        self.stats.add(**tokens)
        return LLMResponse(text=text, model=completion.model or self.model, usage=tokens, retries=attempt,
                           finish_reason=finish_reason)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** attempt))

    def _where(self) -> str:
        return f"{self.model} at {self.base_url or 'api.openai.com'}"


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, when the server sent one."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def _short(error: Exception) -> str:
    return str(error).replace("\n", " ")[:200]
