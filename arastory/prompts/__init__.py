"""The study's 12-feature prompt template: per-variety wording, sampling and rendering."""

from arastory.prompts.sampler import PromptSampler, SampledPrompt
from arastory.prompts.varieties import Variety, load_variety

__all__ = ["PromptSampler", "SampledPrompt", "Variety", "load_variety"]
