"""Write synthetic stories for one variety: `python -m arastory.synthesize variety=egy n=1000 out=<dir> generator=openai`.

    python -m arastory.synthesize variety=mor n=10 dry_run=true               # prompts + cost estimate, no calls
    OPENAI_API_KEY=... python -m arastory.synthesize variety=egy n=1000       # GPT-4-Turbo, resumable
    python -m arastory.synthesize variety=msa n=20 generator=hf generator.name_or_path=<model>
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers
from arastory.paths import CONF_DIR

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="synthesize", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig) -> None:
    import logging

    for noisy in ("httpx", "httpx2", "openai"):   # one INFO line per request would drown the progress bar
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from arastory.synthesize.report import print_summary
    from arastory.synthesize.run import synthesize

    out_dir = HydraConfig.get().runtime.output_dir
    report = synthesize(cfg, out_dir)
    print_summary(out_dir, report)
    if report.get("failed"):
        sys.exit(1)   # some prompts have no answer yet: rerunning the same command asks only for those


if __name__ == "__main__":
    check_overrides(sys.argv[1:], "synthesize")
    main()
