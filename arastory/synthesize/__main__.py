"""Synthetic stories for one variety: `python -m arastory.synthesize dialect=egy n=1000 out=<dir> generator=openai`.

python -m arastory.synthesize dialect=mor n=10 dry_run=true               # prompts + cost estimate, no calls
OPENAI_API_KEY=... python -m arastory.synthesize dialect=egy n=1000       # GPT-4-Turbo, resumable
python -m arastory.synthesize dialect=msa n=20 generator=hf generator.name_or_path=<model>
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers, renamed_overrides
from arastory.paths import CONF_DIR

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="synthesize", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig) -> None:
    from arastory.cli import quiet_http_logs
    from arastory.synthesize.report import print_summary
    from arastory.synthesize.run import synthesize

    quiet_http_logs()  # one INFO line per request would drown the progress bar
    out_dir = HydraConfig.get().runtime.output_dir
    report = synthesize(cfg, out_dir)
    print_summary(out_dir, report)
    if not report.get("dry_run"):
        check_budget(report, cfg.get("max_failure_rate", 0.0))


def check_budget(report: dict, max_failure_rate: float) -> None:
    """Exit 1 with one line when more prompts than the budget have no answer yet (a rerun asks only for those)."""
    from arastory.budget import check_failure_budget

    this_run = report.get("this_run", {})
    check_failure_budget(
        "synthesize",
        this_run.get("answered", 0),
        report.get("failed", 0),
        max_failure_rate,
        already_done=this_run.get("already_answered", 0),
        noun="prompts",
        detail="see generations.jsonl.errors.jsonl" if report.get("failed") else "",
    )


# `dialect=` is the setting's name on every command; here it picks a prompt template of the variety group.
RENAMED, HYDRA_NAMES = {"variety": "dialect"}, {"dialect": "variety"}

if __name__ == "__main__":
    argv = renamed_overrides(sys.argv[1:], RENAMED)
    check_overrides(argv, "synthesize", hydra_names=HYDRA_NAMES)
    sys.argv[1:] = renamed_overrides(argv, {}, HYDRA_NAMES)
    main()
