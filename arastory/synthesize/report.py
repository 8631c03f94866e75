"""Print a synthesis run's report as a few readable lines."""

from __future__ import annotations


def print_summary(out_dir, report: dict) -> None:
    cost = report.get("estimated_cost_usd")
    cost_text = f"${cost:.4f}" if cost is not None else "n/a (no price for this model)"
    if report.get("dry_run"):
        tokens = report["estimated_tokens"]
        print(f"dry run: {report['requested']} {report['variety']} prompts -> {out_dir}/prompts.jsonl")
        print(f"estimated tokens: {tokens['prompt_tokens']} prompt + {tokens['completion_tokens']} completion "
              f"with {report['model']}; estimated cost {cost_text}")
        return
    rejected = ", ".join(f"{gate} {n}" for gate, n in report["rejected"].items() if n) or "none"
    print(f"{report['kept']}/{report['requested']} {report['variety']} stories kept -> {out_dir}/stories.jsonl")
    print(f"answered {report['generated']} (this run {report['this_run']['answered']}, before "
          f"{report['this_run']['already_answered']}), failed {report['failed']}, rejected: {rejected}")
    tokens = report["tokens"]
    print(f"tokens: {tokens['prompt_tokens']} prompt + {tokens['completion_tokens']} completion; "
          f"estimated cost {cost_text}; retries {report['retries']}; {report['elapsed_s']} s")
    if report["failed"]:
        print(f"{report['failed']} prompts have no answer yet (see {out_dir}/generations.jsonl.errors.jsonl); "
              "rerun the same command to ask only for those")
