"""The evaluation command's Hydra main (arastory/conf/evaluate.yaml): `arastory evaluate`, `python -m arastory.evaluate`,
`python evaluate.py`. Evaluate a system on fresh prompts (judge + metrics + CIs), compare evaluations, and run
human-rating sheets.

    arastory evaluate run=outputs/train/2026-11-27/12-00-00 out=outputs/eval/direct-egy
    arastory evaluate run=<run dir> system=openai system.model=gpt-3.5-turbo prompts=<eval dir>/prompts.jsonl
    arastory evaluate system=file system.path=../shared/data/arastories out=outputs/eval/released-gpt4 judge=none
    arastory evaluate compare=multirun-eval/2026-11-27/12-00-00 out=outputs/compare
    arastory evaluate human.export=[outputs/eval/a,outputs/eval/b] out=outputs/human
    arastory evaluate human.import=[r1.csv,r2.csv] human.key=outputs/human/key.json human.evals=[<a>,<b>] out=<dir>

Hydra names the job after this module (`evaluate`), so out dirs keep their `evaluate.log` whichever way it is started.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers
from arastory.paths import CONF_DIR

log = logging.getLogger(__name__)

register_resolvers()


def _paths(value) -> list[str]:
    """A path or a list of paths from the config, as strings."""
    if value is None:
        return []
    values = OmegaConf.to_container(value) if OmegaConf.is_config(value) else [value]
    return [str(v) for v in values] if isinstance(values, list) else [str(values)]


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig):
    out_dir = HydraConfig.get().runtime.output_dir
    if cfg.compare:
        from arastory.evaluate.compare import compare_evaluations

        result = compare_evaluations(
            _paths(cfg.compare),
            out_dir,
            n_boot=int(cfg.comparison.n_boot),
            strict=bool(cfg.comparison.strict),
            diversity_subsample=int(cfg.comparison.diversity_subsample),
        )
        log.info(f"comparison written to {out_dir}")
        return result
    if cfg.human.export:
        from arastory.evaluate.human import export_sheet

        result = export_sheet(_paths(cfg.human.export), out_dir, cfg.human.per_system, cfg.human.seed, cfg.human.raters)
        sheets = ", ".join(Path(p).name for p in result["sheets_html"])
        log.info(f"blind sheets written to {out_dir} ({sheets}; keep key.json from raters)")
        return result
    if cfg.human["import"]:
        from arastory.errors import ConfigError
        from arastory.evaluate.human import import_sheets

        if not cfg.human.key:
            raise ConfigError("human.key", "is required with human.import (the key.json written by human.export)")
        result = import_sheets(
            _paths(cfg.human["import"]), str(cfg.human.key), _paths(cfg.human.evals) or None, out_dir
        )
        log.info(f"judge-human agreement written to {out_dir} (agreement.json, agreement.md)")
        return result
    from arastory.evaluate.pipeline import evaluate
    from arastory.evaluate.report import judge_table

    scores = evaluate(cfg, out_dir)
    log.info(f"\neval dir: {out_dir}")
    if scores["judge"]:
        log.info("\n".join(judge_table(scores)))
    return scores


def run() -> None:
    """Check the command line's overrides (one-line errors before Hydra starts), then run the Hydra main."""
    check_overrides(sys.argv[1:], "evaluate")
    main()
