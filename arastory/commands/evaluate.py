"""The evaluate command's Hydra main (arastory/conf/evaluate.yaml): `arastory evaluate`, `python -m arastory.evaluate`,
`python evaluate.py`. Evaluate a system on fresh prompts (judge + metrics + CIs), compare evaluations, and run
human-rating sheets.

    arastory evaluate run=outputs/train/2026-11-27/12-00-00 out=outputs/eval/direct-egy
    arastory evaluate run=<run dir> system=openai system.model=gpt-3.5-turbo prompts=<eval dir>/prompts.jsonl
    arastory evaluate system=file system.path=../shared/data/arastories out=outputs/eval/released-gpt4 judge=none
    arastory evaluate mode=compare compare=multirun-eval/2026-11-27/12-00-00 out=outputs/compare
    arastory evaluate mode=human_export human.export=[outputs/eval/a,outputs/eval/b] out=outputs/human
    arastory evaluate mode=human_import human.ratings=[r1.csv,r2.csv] human.key=outputs/human/key.json \\
        human.evals=[<a>,<b>]

`mode=` names one of four modes (score, compare, human_export, human_import); left out, it follows the one input set.

Hydra names the job after this module (`evaluate`), so out dirs keep their `evaluate.log` whichever way it is started.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers, renamed_overrides
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
def main(cfg: DictConfig) -> dict:
    out_dir = HydraConfig.get().runtime.output_dir
    mode = evaluation_mode(cfg)
    if mode == "compare":
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
    if mode == "human_export":
        from arastory.evaluate.human import export_sheet

        result = export_sheet(_paths(cfg.human.export), out_dir, cfg.human.per_system, cfg.human.seed, cfg.human.raters)
        sheets = ", ".join(Path(p).name for p in result["sheets_html"])
        log.info(f"blind sheets written to {out_dir} ({sheets}; keep key.json from raters)")
        return result
    if mode == "human_import":
        from arastory.errors import ConfigError
        from arastory.evaluate.human import import_sheets

        if not cfg.human.key:
            raise ConfigError("human.key", "is required with mode=human_import (the key.json written by human.export)")
        result = import_sheets(_paths(cfg.human.ratings), str(cfg.human.key), _paths(cfg.human.evals) or None, out_dir)
        log.info(f"judge-human agreement written to {out_dir} (agreement.json, agreement.md)")
        return result
    from arastory.evaluate.pipeline import evaluate
    from arastory.evaluate.report import judge_table

    scores = evaluate(cfg, out_dir)
    log.info(f"\neval dir: {out_dir}")
    if scores["judge"]:
        log.info("\n".join(judge_table(scores)))
    return scores


# Each mode and the setting that holds its input; `score` (the default) needs none of them.
MODES = {"compare": "compare", "human_export": "human.export", "human_import": "human.ratings"}
# Old name -> new name; the old one still works, with a note.
RENAMED = {"human.import": "human.ratings", "varieties": "dialect"}


def evaluation_mode(cfg: DictConfig) -> str:
    """`mode=` as given (its input must be set), or the mode whose input is set (score when none; two is an error)."""
    from arastory.errors import ConfigError

    given = [mode for mode, key in MODES.items() if OmegaConf.select(cfg, key)]
    mode = cfg.get("mode")
    if mode is None:
        if len(given) > 1:
            keys = " and ".join(MODES[m] for m in given)
            raise ConfigError(
                "mode", f"{keys} are set together: evaluate runs one mode at a time (mode={given[0]}, ...)"
            )
        return given[0] if given else "score"
    if mode not in ("score", *MODES):
        raise ConfigError("mode", f"'{mode}' is not one of: score, {', '.join(MODES)}")
    if mode != "score" and mode not in given:
        raise ConfigError(MODES[mode], f"is required with mode={mode}")
    return mode


def run() -> None:
    """Check the command line's overrides (one-line errors before Hydra starts), then run the Hydra main."""
    sys.argv[1:] = renamed_overrides(sys.argv[1:], RENAMED)
    check_overrides(sys.argv[1:], "evaluate")
    main()
