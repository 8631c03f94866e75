"""An OpenAI-compatible chat client (the official `openai` package, the [openai] extra) with bounded retries
(arastory.llm.retry: backoff that honours Retry-After, timeouts that grow) and counters, for OpenAI itself, vLLM,
TGI or any compatible server via `base_url`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from arastory.errors import ArastoryError, ConfigError
from arastory.extras import require_extra
from arastory.llm.retry import RETRY_AFTER_MAX, RetriesExhausted, RetryPolicy, RetryStats

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion


def retryable(openai: ModuleType) -> dict:
    """What is worth another attempt, and the RetryStats counter each one counts under (subclasses first)."""
    return {
        openai.RateLimitError: "rate_limited",
        openai.APITimeoutError: "timeouts",
        openai.APIConnectionError: "connection_errors",
        openai.InternalServerError: "server_errors",
    }


class LLMError(ArastoryError):
    """A request that still failed after all retries (or failed in a way retrying cannot fix)."""


class LLMAuthError(LLMError):
    """The server refused the API key (401) or the access (403): every other request would fail too, so batch jobs
    stop."""


@dataclass
class LLMResponse:
    text: str
    model: str
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens
    retries: int = 0
    finish_reason: str | None = None  # "stop", "length" (cut at max_tokens), ... as the server says


def require_api_key(env_var: str, hint: str = "") -> str:
    """The key from the environment, or a one-line ConfigError saying how to set it."""
    key = os.environ.get(env_var, "").strip()
    if not key:
        raise ConfigError(env_var, f"is not set: `export {env_var}=...`" + (f", or {hint}" if hint else ""))
    return key


class ChatClient:
    """Chat completions with our own retry loop (the SDK's is turned off so every retry is counted). `config_key`
    names the config that asked for the client in the one-line error when the [openai] extra is not installed."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        key_hint: str = "",
        retry_after_max: float = RETRY_AFTER_MAX,
        config_key: str = "llm",
        **default_params: Any,
    ):
        self._openai = openai = require_extra("openai", config_key)
        api_key = require_api_key(api_key_env, key_hint)
        self.model, self.base_url, self.timeout = model, base_url, float(timeout)
        self.max_retries = max_retries
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max, retry_after_max, timeout=self.timeout)
        self.default_params = {k: v for k, v in default_params.items() if v is not None}
        self.stats = RetryStats()
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def chat(self, messages: list[dict], **params: Any) -> LLMResponse:
        """One answer, retrying 429/5xx/timeouts/dropped connections through `self.retry` (this is the only retry
        layer: the SDK's own is off); a retry after a timeout allows longer (see RetryPolicy.timeout_for)."""
        params = {**self.default_params, **{k: v for k, v in params.items() if v is not None}}
        openai = self._openai

        def send(timeout: float | None) -> ChatCompletion:
            return self._client.chat.completions.create(model=self.model, messages=messages, timeout=timeout, **params)

        try:
            done = self.retry.call(send, retryable(openai), self.stats)
        except RetriesExhausted as error:
            self.stats.add(failed=1)
            raise LLMError(
                f"{self._where()}: gave up after {error.attempts} attempts (rate limits, server errors or timeouts)"
            ) from None
        except openai.AuthenticationError as error:
            raise LLMAuthError(
                f"{self._where()}: authentication failed ({error.status_code}); check the API key"
            ) from None
        except openai.PermissionDeniedError as error:
            raise LLMAuthError(
                f"{self._where()}: access denied ({error.status_code}); check the API key's permissions for this model"
            ) from None
        except openai.APIStatusError as error:
            raise LLMError(f"{self._where()}: request rejected ({error.status_code}): {_short(error)}") from None
        return self._response(done.value, done.retries)

    def _response(self, completion: ChatCompletion, attempt: int) -> LLMResponse:
        try:
            text = completion.choices[0].message.content
            finish_reason = completion.choices[0].finish_reason
        except (AttributeError, IndexError, TypeError):
            text = finish_reason = None
        if text is None:
            raise LLMError(f"{self._where()}: the answer has no message content")
        usage = completion.usage
        tokens = {
            "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
            "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
        }
        self.stats.add(**tokens)
        return LLMResponse(
            text=text, model=completion.model or self.model, usage=tokens, retries=attempt, finish_reason=finish_reason
        )

    def _where(self) -> str:
        return f"{self.model} at {self.base_url or 'api.openai.com'}"


def _short(error: Exception) -> str:
    return str(error).replace("\n", " ")[:200]
