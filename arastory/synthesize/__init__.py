"""Synthetic story generation: the study's feature prompts → an LLM (OpenAI-compatible or local HF) → quality gates."""

from arastory.synthesize.gates import GATES, GateResult, NearDuplicateIndex, QualityGates
from arastory.synthesize.generators import HFGenerator, OpenAIGenerator

__all__ = ["GATES", "GateResult", "HFGenerator", "NearDuplicateIndex", "OpenAIGenerator", "QualityGates"]
