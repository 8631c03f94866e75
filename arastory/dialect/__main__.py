"""`python -m arastory.dialect evaluate|train`: measure a dialect identifier on labelled stories, or train and save one.

python -m arastory.dialect evaluate input=../shared/data/arastories out=outputs/dialect/eval
python -m arastory.dialect evaluate input=outputs/synth/mor/stories.jsonl dialect_id.path=model.joblib out=...
python -m arastory.dialect train source=bundled out=outputs/dialect/bundled       # model.joblib + report.json
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arastory.cli import check_overrides, fail, one_line_errors, register_resolvers
from arastory.errors import ConfigError
from arastory.paths import CONF_DIR
from arastory.plain import plain_dict

if TYPE_CHECKING:
    from arastory.dialect.identify import DialectIdentifier
    from arastory.records import StoryRecord

log = logging.getLogger(__name__)

register_resolvers()
COMMANDS = ("evaluate", "train")
USAGE = (
    "usage: python -m arastory.dialect evaluate input=<labelled stories> out=<dir> | "
    "python -m arastory.dialect train source=<labelled text> out=<dir>"
)


@hydra.main(config_path=str(CONF_DIR), config_name="dialect", version_base="1.3")
@one_line_errors
def main(cfg: DictConfig) -> dict:
    out_dir = HydraConfig.get().runtime.output_dir
    if cfg.command == "evaluate":
        return evaluate(cfg, out_dir)
    return train(cfg, out_dir)


def evaluate(cfg: DictConfig, out_dir: str) -> dict:
    from arastory.dialect.evaluation import evaluate_records
    from arastory.synthesize.run import build

    if cfg.input is None:
        raise ConfigError("input", "which labelled stories? input=<.jsonl | released .csv | folder | [list]>")
    records = read_labelled(cfg.input)
    identifier = build(cfg.dialect_id)
    thresholds = plain_dict(cfg.thresholds) if isinstance(cfg.thresholds, DictConfig) else cfg.thresholds
    about = {"input": [str(p) for p in _as_list(cfg.input)], "identifier": describe(cfg.dialect_id, identifier)}
    report = evaluate_records(records, identifier, out_dir, thresholds, int(cfg.calibration_bins), about)
    print_evaluation(out_dir, report)
    return report


def describe(node: DictConfig, identifier: DialectIdentifier) -> dict:
    """Which identifier was measured: its config (as given) and, for arastory's classifier, what it was trained on."""
    return {
        "config": OmegaConf.to_container(node, resolve=True),
        "classes": list(getattr(identifier, "classes", [])),
        "training": getattr(identifier, "training", None),
    }


def read_labelled(inputs: str | Path | Sequence[str | Path]) -> list[StoryRecord]:
    from arastory.data.readers import read_stories
    from arastory.errors import DataError

    records = [r for item in _as_list(inputs) for r in read_stories(str(item))]
    if not records:
        raise DataError(str(inputs), "no stories to evaluate")
    return records


def _as_list(value: object) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def train(cfg: DictConfig, out_dir: str) -> dict:
    from arastory.dialect.training import recipe_params, train_and_save

    recipe_params(cfg.dialect_id)  # dialect_id=camel has no recipe (nor a `source`): say so first
    source = OmegaConf.to_container(cfg.source) if OmegaConf.is_config(cfg.source) else cfg.source
    if not isinstance(source, str | list | dict):
        raise ConfigError("source", f"expected bundled, a path, a list of them or {{variety: file}}, got {source!r}")
    report = train_and_save(
        source, cfg.dialect_id, out_dir, folds=int(cfg.cv_folds), seed=int(cfg.seed), progress=bool(cfg.progress)
    )
    log.info(
        f"trained on {report['documents']} documents "
        f"({', '.join(f'{v} {n}' for v, n in report['per_variety'].items())}) -> {out_dir}/model.joblib"
    )
    cv = report.get("cross_validation")
    if cv:
        log.info(
            f"  cross-validated accuracy: {_pairs(cv['accuracy'])}; gate thresholds: {_pairs(report['thresholds'])}"
        )
    log.info(f"  use it with dialect_id.path={out_dir}/model.joblib")
    return report


def print_evaluation(out_dir: str, report: dict) -> None:
    gate = report["gate"]
    log.info(f"{sum(report['n'].values())} stories ({_pairs(report['n'])}) -> {out_dir}/report.json")
    log.info(
        f"  accuracy: {_pairs(report['accuracy'])}; macro F1 {report['macro_f1']:.3f}; "
        f"ECE {report['calibration']['ece']:.3f}"
    )
    log.info(
        f"  gate (thresholds {_pairs(gate['thresholds'])}): false reject {_pairs(gate['false_reject'])}; "
        f"false accept {_pairs(gate['false_accept'])}"
    )
    drift = {v: d["mean"] for v, d in report["drift"].items() if d.get("n")}
    if drift:
        log.info(f"  mean share of MSA sentences in dialect stories: {_pairs(drift)}")


def _pairs(values: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def split_command(argv: list[str]) -> list[str]:
    """`evaluate a=b` -> `a=b command=evaluate` (Hydra takes key=value only); `--help` goes to Hydra as it is."""
    if argv[:1] in (["--help"], ["-h"], ["--hydra-help"]):
        return argv
    if not argv or argv[0] not in COMMANDS:
        fail(USAGE)
    return [*argv[1:], f"command={argv[0]}"]


if __name__ == "__main__":
    sys.argv[1:] = split_command(sys.argv[1:])
    check_overrides(sys.argv[1:], "dialect")
    main()
