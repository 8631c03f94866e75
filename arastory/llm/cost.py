"""Token prices for cost estimates (USD per million tokens, input/output): list prices as we know them, ours to update."""

from __future__ import annotations

PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4-0125-preview": (10.0, 30.0),   # the study's generator and judge
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-3.5-turbo": (0.50, 1.50),
}


# The endpoints whose price table is known (PRICES_PER_MTOK is OpenAI's list price); any other server is unpriced.
OPENAI_ENDPOINT = "https://api.openai.com/v1"
PRICED_ENDPOINTS = {OPENAI_ENDPOINT: PRICES_PER_MTOK}


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  prices: dict[str, tuple[float, float]] | None = None, endpoint: str | None = None) -> float | None:
    """Estimated USD, or None when the price is unknown: a model missing from the table, or an `endpoint`
    (base URL; None means OpenAI's) with no known price table, e.g. a local vLLM server serving "gpt-4o"."""
    known = PRICED_ENDPOINTS.get((endpoint or OPENAI_ENDPOINT).rstrip("/"))
    if known is None and not prices:
        return None
    table = {**(known or {}), **(prices or {})}
    price = table.get(model) or next((p for name, p in table.items() if model.startswith(name)), None)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, 6)
