"""Train a dialect classifier for keeps: cross-validated accuracy and gate thresholds, then model.joblib + report.json.

`python -m arastory.dialect train source=<labelled text> out=<dir>`; use the result anywhere with
`dialect_id.path=<dir>/model.joblib`.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from arastory.dialect.classifier import DialectClassifier, training_records
from arastory.dialect.thresholds import HELD_OUT_DRIFT, choose_thresholds, cross_validate, cross_validated_summary
from arastory.errors import ConfigError
from arastory.io import atomic_write_json
from arastory.plain import plain_dict

RECIPE_KEYS = ("ngram_range", "max_features", "word_ngram_range", "word_max_features", "alpha", "story_C", "folds")


def recipe_params(node: DictConfig | dict) -> dict:
    """The classifier recipe from a dialect_id config (arastory/conf/dialect_id/ngram.yaml)."""
    values = plain_dict(node, resolve=True)
    target = str(values.get("_target_", ""))
    if not target.endswith("ngram_identifier"):
        raise ConfigError(
            "dialect_id", f"`train` builds arastory's classifier (dialect_id=ngram), not {target or 'this'}"
        )
    params = {k: values[k] for k in RECIPE_KEYS if k in values}
    for key in ("ngram_range", "word_ngram_range"):
        if key in params:
            params[key] = tuple(params[key])
    return params


def train_and_save(
    source: str | list | dict,
    dialect_cfg: DictConfig | dict,
    out_dir: str | Path,
    folds: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    out_dir = Path(out_dir)
    params = recipe_params(dialect_cfg)
    records = training_records(source)
    report: dict = {"source": source if isinstance(source, (str, list, dict)) else str(source), "params": params}
    if folds >= 2:
        held_out = cross_validate(records, params, folds=folds, seed=seed, progress=progress)
        thresholds = choose_thresholds(held_out, sorted({r.variety for r in records}))
        report["cross_validation"] = {
            "folds": folds,
            "held_out_drift": list(HELD_OUT_DRIFT),
            **cross_validated_summary(held_out, thresholds),
        }
        report["threshold_procedure"] = (
            "per target variety, the middle of the thresholds on P(target) with the least "
            "balanced error (false rejects of held-out genuine and MSA-drifted stories + "
            "false accepts of held-out stories of other varieties) / 2"
        )
    elif folds == 0:
        configured = dialect_cfg.get("thresholds") if hasattr(dialect_cfg, "get") else None
        thresholds = dict(plain_dict(configured) if configured is not None else {})
    else:
        raise ConfigError("cv_folds", f"must be 0 (no cross-validation) or at least 2, got {folds}")
    model = DialectClassifier(**params, thresholds=thresholds, seed=seed).fit(records)
    model.save(out_dir / "model.joblib")
    report.update(
        {
            "thresholds": model.thresholds,
            "documents": model.training["documents"],
            "per_variety": model.training["per_variety"],
            "training": model.training,
            "model": "model.joblib",
        }
    )
    atomic_write_json(out_dir / "report.json", report)
    return report
