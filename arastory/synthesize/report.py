"""Print a synthesis run's report as a few readable lines."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def print_summary(out_dir: str | Path, report: dict) -> None:
    cost = report.get("estimated_cost_usd")
    cost_text = f"${cost:.4f}" if cost is not None else "n/a (no price for this model)"
    if report.get("dry_run"):
        tokens, worst = report["estimated_tokens"], report["worst_case"]
        log.info(
            f"dry run: {report['requested']} {report['variety']} stories wanted; expect {report['expected_attempts']} "
            f"prompts (keep rate {report['expected_keep_rate']}), at most {worst['attempts']} "
            f"-> {out_dir}/prompts.jsonl"
        )
        log.info(
            f"estimated tokens: {tokens['prompt_tokens']} prompt + {tokens['completion_tokens']} completion "
            f"with {report['model']}; estimated cost {cost_text} (at most {_usd(worst['estimated_cost_usd'])})"
        )
        return
    rejected = ", ".join(f"{gate} {n}" for gate, n in report["rejected"].items() if n) or "none"
    log.info(
        f"{report['kept']}/{report['requested']} {report['variety']} stories kept -> {out_dir}/stories.jsonl "
        f"({report['stopped']})"
    )
    log.info(
        f"answered {report['answered']} of at most {report['max_attempts']} prompts (this run "
        f"{report['this_run']['answered']} in {report['this_run']['rounds']} rounds, before "
        f"{report['this_run']['already_answered']}), failed {report['failed']}, rejected: {rejected}"
        + (f", surplus {report['surplus']} (surplus.jsonl)" if report.get("surplus") else "")
    )
    drift = (report.get("dialect_drift") or {}).get("kept") or {}
    if drift.get("n"):
        log.info(
            f"dialect drift: MSA sentences per kept story, mean {drift['mean']:.2f}, median {drift['p50']:.2f}, "
            f"p90 {drift['p90']:.2f}; {drift['share_mostly_msa']:.0%} of kept stories are mostly MSA"
        )
    tokens = report["tokens"]
    log.info(
        f"tokens: {tokens['prompt_tokens']} prompt + {tokens['completion_tokens']} completion; "
        f"estimated cost {cost_text}; retries {report['retries']}; {report['elapsed_s']} s"
    )
    if report["failed"]:
        log.info(
            f"{report['failed']} prompts have no answer yet (see {out_dir}/generations.jsonl.errors.jsonl); "
            "rerun the same command to ask only for those"
        )


def _usd(cost) -> str:
    return f"${cost:.4f}" if cost is not None else "n/a"
