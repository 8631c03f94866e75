"""Command line: translate English stories to Arabic into <out>/parallel.jsonl and <out>/report.json.

python -m arastory.translate source=roneneldan/TinyStories fields.story_only=true out=outputs/translate/tinystories
python -m arastory.translate source=stories.csv out=outputs/translate/mine translator=google
python -m arastory.translate source=stories.jsonl out=outputs/translate/llm translator=openai translator.model=gpt-4o
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers
from arastory.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="translate", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig) -> dict:
    from arastory.cli import quiet_http_logs
    from arastory.translate.pipeline import translate

    quiet_http_logs()
    report = translate(cfg)
    log.info(summary(report))
    check_budget(report, cfg.max_failure_rate)
    return report


def check_budget(report: dict, max_failure_rate: float) -> None:
    """Exit non-zero (one line) when too few of the items read were translated; rows written are kept."""
    from arastory.budget import check_failure_budget

    skipped = report["skipped_bad_input"] + report["skipped_too_long"]
    first = report["bad_input_examples"][0][:160] if report["bad_input_examples"] else ""
    check_failure_budget(
        f"translate source={report['source']}",
        report["translated"],
        report["failed"] + skipped,
        max_failure_rate,
        already_done=report["already_done"],
        detail=f"failed {report['failed']}, bad input {report['skipped_bad_input']}, too long "
        f"{report['skipped_too_long']}"
        + (f"; first: {first}" if first else "")
        + f"; see {report['out']}/failed.jsonl, bad_input.jsonl",
        failed_are_input=report["failed"] == 0,
    )


def summary(report: dict) -> str:
    cost = report["estimated_cost_usd"]
    return (
        f"translated {report['translated']} (already done {report['already_done']}, failed {report['failed']}, "
        f"skipped bad input {report['skipped_bad_input']}, too long {report['skipped_too_long']}) "
        f"in {report['elapsed_s']:.1f}s "
        f"({report['items_per_s'] or 0:.2f} items/s), retries {report['retries']}, "
        f"estimated cost {'unknown' if cost is None else f'${cost:.4f}'}\n"
        f"{report['rows_in_output']} rows in {report['out']}/parallel.jsonl; report: {report['out']}/report.json"
    )


if __name__ == "__main__":
    check_overrides(sys.argv[1:], "translate")
    main()
