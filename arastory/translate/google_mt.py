"""Translate with Google Cloud Translation (the study's translator) through the official `google-cloud-translate`
v2 client: batched requests, concurrent, with counted retries for 429, 5xx, timeouts and dropped connections."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from arastory.errors import ConfigError
from arastory.extras import require_extra
from arastory.llm.retry import RETRY_AFTER_MAX, RetriesExhausted, RetryPolicy
from arastory.translate.base import TranslationFailed, Translator, TranslatorError
from arastory.translate.segments import join_translations, split_for_requests


class GoogleTranslator(Translator):
    """Credentials from the environment only: an API key in `api_key_env` (default GOOGLE_API_KEY), else
    Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS=<service account json>)."""

    def __init__(
        self,
        source_language: str = "en",
        target_language: str = "ar",
        model: str | None = "nmt",
        api_key_env: str = "GOOGLE_API_KEY",
        endpoint: str | None = None,
        max_segments_per_request: int = 128,
        max_chars_per_request: int = 30000,
        concurrency: int = 4,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        price_per_million_chars: float | None = 20.0,
        retry_after_max: float = RETRY_AFTER_MAX,
    ):
        super().__init__()
        translate_v2 = require_extra("google.cloud.translate_v2", "translator")
        self.source_language, self.target_language, self.model = source_language, target_language, model
        self.endpoint = endpoint
        self.max_segments, self.max_chars = max_segments_per_request, max_chars_per_request
        self.concurrency, self.max_retries = max(1, concurrency), max_retries
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max, retry_after_max)
        self.price = price_per_million_chars
        options = {"api_endpoint": endpoint} if endpoint else None
        self.client = translate_v2.Client(
            target_language=target_language, credentials=_credentials(api_key_env), client_options=options
        )
        self.label = f"google:{model or 'default'}"

    def identity(self) -> dict:
        return {
            "label": self.label,
            "source_language": self.source_language,
            "target_language": self.target_language,
            "endpoint": self.endpoint,
        }

    def estimated_cost(self) -> float | None:
        if self.price is None:
            return None
        return round(self.stats.characters * self.price / 1e6, 6)

    def translate(self, texts: list[str]) -> list[str | TranslationFailed]:
        # A text over the per-request character limit goes in sentence chunks (rare for stories).
        chunks, layouts = split_for_requests(texts, self.max_chars)
        requests = self._requests(chunks)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests) or 1)) as pool:
            answers = list(pool.map(lambda ids: self._send([chunks[i] for i in ids]), requests))
        translated: list[str | TranslationFailed] = [TranslationFailed("not sent")] * len(chunks)
        for ids, answer in zip(requests, answers, strict=True):
            for n, i in enumerate(ids):
                translated[i] = answer if isinstance(answer, TranslationFailed) else answer[n]
        return join_translations(layouts, translated)

    def _requests(self, chunks: list[str]) -> list[list[int]]:
        """Group chunk indices into requests under the API's segment and character limits."""
        groups: list[list[int]] = []
        current: list[int] = []
        chars = 0
        for i, chunk in enumerate(chunks):
            if current and (len(current) >= self.max_segments or chars + len(chunk) > self.max_chars):
                groups.append(current)
                current, chars = [], 0
            current.append(i)
            chars += len(chunk)
        if current:
            groups.append(current)
        return groups

    def _send(self, values: list[str]) -> list[str] | TranslationFailed:
        from google.api_core import exceptions as gexc

        def send(timeout: float | None) -> list[str]:  # None: no RetryPolicy.timeout (the v2 client takes none)
            answer = self.client.translate(
                values,
                target_language=self.target_language,
                format_="text",
                source_language=self.source_language,
                model=self.model,
            )
            return [a["translatedText"] for a in answer]

        try:
            translated = self.retry.call(send, _retryable(), self.stats).value
        except RetriesExhausted as error:
            self.stats.add(failed_texts=len(values))
            return TranslationFailed(f"google translate at {self._where()}: gave up after {error.attempts} attempts")
        except (gexc.Unauthorized, gexc.Forbidden) as error:
            raise TranslatorError(
                f"google translate at {self._where()}: not authorised ({error.code}); check the API key or credentials"
            ) from None
        except gexc.GoogleAPICallError as error:
            raise TranslatorError(
                f"google translate at {self._where()}: request rejected ({error.code}): {str(error.message)[:150]}"
            ) from None
        except (KeyError, TypeError, ValueError) as error:
            raise TranslatorError(f"google translate at {self._where()}: unexpected answer ({error})") from None
        self.stats.add(characters=sum(len(v) for v in values), segments=len(values))
        return translated

    def _where(self) -> str:
        return self.endpoint or "translation.googleapis.com"


def _credentials(api_key_env: str):
    """An API key from the environment, else Application Default Credentials; never a key from config."""
    import google.auth
    import google.auth.api_key
    import google.auth.exceptions

    key = os.environ.get(api_key_env, "").strip()
    if key:
        return google.auth.api_key.Credentials(key)
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ConfigError(
            api_key_env,
            f"is not set: `export {api_key_env}=...` or `export GOOGLE_APPLICATION_CREDENTIALS=<service account json>`",
        ) from None
    return credentials


def _retryable() -> dict:
    """What is worth another attempt, and the stats counter each one counts under."""
    import requests
    from google.api_core import exceptions as gexc

    return {
        gexc.TooManyRequests: "rate_limited",
        gexc.InternalServerError: "server_errors",
        gexc.ServiceUnavailable: "server_errors",
        gexc.BadGateway: "server_errors",
        gexc.GatewayTimeout: "server_errors",
        requests.exceptions.Timeout: "timeouts",
        requests.exceptions.ConnectionError: "connection_errors",
    }
