"""Command line: translate English stories to Arabic into <out>/parallel.jsonl and <out>/report.json.

    python -m arastory.translate source=roneneldan/TinyStories fields.story_only=true out=outputs/translate/tinystories
    python -m arastory.translate source=stories.csv out=outputs/translate/mine translator=google
    python -m arastory.translate source=stories.jsonl out=outputs/translate/llm translator=openai translator.model=gpt-4o-mini
"""

import sys

import hydra
from omegaconf import DictConfig

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers

register_resolvers()


@hydra.main(config_path="../../conf", config_name="translate", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig) -> dict:
    from arastory.translate.pipeline import translate

    report = translate(cfg)
    print(summary(report))
    return report


def summary(report: dict) -> str:
    cost = report["estimated_cost_usd"]
    return (f"translated {report['translated']} (already done {report['already_done']}, failed {report['failed']}, "
            f"skipped bad input {report['skipped_bad_input']}) in {report['elapsed_s']:.1f}s "
            f"({report['items_per_s'] or 0:.2f} items/s), retries {report['retries']}, "
            f"estimated cost {'unknown' if cost is None else f'${cost:.4f}'}\n"
            f"{report['rows_in_output']} rows in {report['out']}/parallel.jsonl; report: {report['out']}/report.json")


if __name__ == "__main__":
    check_overrides(sys.argv[1:], "translate")
    main()
