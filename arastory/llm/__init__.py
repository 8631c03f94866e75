"""LLM access for translation, synthesis and judging: an OpenAI-compatible client, retries, resumable batches, costs."""

from arastory.llm.client import ChatClient, LLMError, LLMResponse, require_api_key
from arastory.llm.cost import estimate_cost
from arastory.llm.resumable import RunStats, run_resumable

__all__ = ["ChatClient", "LLMError", "LLMResponse", "RunStats", "estimate_cost", "require_api_key", "run_resumable"]
