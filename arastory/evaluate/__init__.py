"""Evaluation: fresh prompts, generation by a trained run / HF model / API model, LLM judge, metrics, scores, reports.

Entry point: `python evaluate.py run=<train run dir> out=<dir>` (see docs/evaluate.md).
"""
