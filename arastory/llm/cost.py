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


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  prices: dict[str, tuple[float, float]] | None = None) -> float | None:
    """Estimated USD, or None when the model's price is unknown (e.g. a local vLLM server)."""
    table = {**PRICES_PER_MTOK, **(prices or {})}
    price = table.get(model) or next((p for name, p in table.items() if model.startswith(name)), None)
    if price is None:
        return None
    return round((prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6, 6)
