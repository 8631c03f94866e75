"""Token prices for cost estimates (USD per million tokens, input/output): OpenAI's list prices, ours to update."""

from __future__ import annotations

# OpenAI's list prices as of 2026-12-01 (text tokens, standard tier; source developers.openai.com/api/docs/pricing, read
# through copies of it dated 2026-03..11 that agree on every entry checked: gpt-4o, gpt-4o-mini, gpt-4.1*,
# gpt-4-0125-preview, gpt-3.5-turbo-0125, gpt-3.5-turbo-instruct). Check that page before relying on an estimate.
# A dated snapshot (`gpt-4o-mini-2024-07-18`) is priced as its family unless it is listed itself; the
# older 3.5 snapshots were priced apart and gpt-3.5-turbo was shut down on 2026-10-23 (kept for past runs' costs).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4-0125-preview": (10.0, 30.0),  # the study's generator and judge (a GPT-4 Turbo snapshot)
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),  # gpt-4-turbo-2024-04-09, gpt-4-turbo-preview
    "gpt-4": (30.0, 60.0),  # gpt-4-0613, gpt-4-0314
    "gpt-4-32k": (60.0, 120.0),
    "gpt-4o": (2.5, 10.0),  # gpt-4o-2024-08-06, gpt-4o-2024-11-20
    "gpt-4o-2024-05-13": (5.0, 15.0),
    "gpt-4o-mini": (0.15, 0.60),  # gpt-4o-mini-2024-07-18
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),  # gpt-3.5-turbo-0125 (the study's baseline system)
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "gpt-3.5-turbo-0613": (1.5, 2.0),
    "gpt-3.5-turbo-16k": (3.0, 4.0),
    "gpt-3.5-turbo-instruct": (1.5, 2.0),
}


# The endpoints whose price table is known (PRICES_PER_MTOK is OpenAI's list price); any other server is unpriced.
OPENAI_ENDPOINT = "https://api.openai.com/v1"
PRICED_ENDPOINTS = {OPENAI_ENDPOINT: PRICES_PER_MTOK}


def price_of(model: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The model's own entry, else the longest entry it extends with a dash (`gpt-4o-mini-2024-07-18` is
    `gpt-4o-mini`, not `gpt-4`); None when no entry names it (`gpt-4.5-preview` is not `gpt-4`)."""
    if model in table:
        return table[model]
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return table[family] if family else None


def estimate_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    prices: dict[str, tuple[float, float]] | None = None,
    endpoint: str | None = None,
) -> float | None:
    """Estimated USD, or None when the price is unknown: a model missing from the table, or an `endpoint`
    (base URL; None means OpenAI's) with no known price table, e.g. a local vLLM server serving "gpt-4o"."""
    known = PRICED_ENDPOINTS.get((endpoint or OPENAI_ENDPOINT).rstrip("/"))
    if known is None and not prices:
        return None
    price = price_of(model, {**(known or {}), **(prices or {})})
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, 6)
