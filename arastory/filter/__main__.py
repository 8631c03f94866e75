"""`python -m arastory.filter`: filter EN→AR pairs into kept.jsonl / rejected.jsonl with a report and plots.

python -m arastory.filter input=bundled out=outputs/filter/bundled encoder=lexicon
python -m arastory.filter input=parallel.jsonl out=outputs/filter/t090 encoder=labse filter.threshold=0.9
python -m arastory.filter -m input=parallel.jsonl filter.threshold=0.85,0.9,0.92,0.95   # encodes once
python -m arastory.filter -m input=parallel.jsonl out=outputs/filter/big shard=0/2,1/2   # then arastory.data merge
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from arastory.cli import check_overrides, guard_out_dir, one_line_errors, register_resolvers
from arastory.paths import CONF_DIR
from arastory.plain import plain_dict

if TYPE_CHECKING:
    from arastory.data.shards import Shard

log = logging.getLogger(__name__)

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="filter", version_base="1.3")
@one_line_errors
@guard_out_dir
def main(cfg: DictConfig) -> dict:
    from arastory.filter.build import build_encoder, encoder_config, input_path, settings_from_config
    from arastory.filter.pipeline import Filter

    settings = settings_from_config(cfg.filter)
    encoder = build_encoder(encoder_config(cfg.encoder))
    out = cfg.out or HydraConfig.get().runtime.output_dir
    name = HydraConfig.get().runtime.choices.get("encoder")
    shard = shard_of(cfg)
    flt = Filter(
        input_path(cfg.input), shard.dir(out) if shard else out, encoder, settings, encoder_name=name, shard=shard
    )
    report = flt.run(wandb_cfg=plain_dict(cfg.wandb, resolve=True))
    print_summary(report)
    if report["counts"]["kept"] == 0:
        from arastory.budget import BudgetExceeded

        reasons = ", ".join(f"{k} {v}" for k, v in report["counts"]["rejected_by_check"].items() if v)
        raise BudgetExceeded(
            f"filter: kept 0 of {report['counts']['read']} pairs (below threshold "
            f"{report['counts']['below_threshold']}; {reasons or 'no check failures'}): nothing to "
            f"train on; see {report['out']}/report.json"
        )
    return report


def shard_of(cfg: DictConfig) -> Shard | None:
    """`shard=i/n` (into <out>/shards/<i>-of-<n>; `out=` is required so the shards can be merged), or None."""
    from arastory.data.shards import Shard
    from arastory.errors import ConfigError

    shard = Shard.parse(cfg.get("shard"))
    if shard and not cfg.out:
        raise ConfigError(
            "out",
            "is required with shard=i/n: the shards go to <out>/shards/ and "
            "`python -m arastory.data merge <out>` merges them",
        )
    return shard


def print_summary(report: dict) -> None:
    counts = report["counts"]
    rejected = ", ".join(f"{k} {v}" for k, v in counts["rejected_by_check"].items() if v)
    log.info(
        f"{counts['read']} pairs read ({counts['input_errors']} bad lines skipped), "
        f"encoder {report['encoder']['name']} ({report['encoder']['id']}), threshold {report['threshold']}"
    )
    log.info(f"  rejected by checks: {rejected or 'none'}")
    log.info(
        f"  below threshold: {counts['below_threshold']}  kept at threshold: {counts['kept_at_threshold']}  "
        f"duplicates: {counts['duplicate']}  near-duplicates: {counts['near_duplicate']}  leakage: {counts['leakage']}"
    )
    log.info(f"  kept {counts['kept']} of {counts['read']}; cache: {report['cache']}")
    log.info(
        f"  outputs: {report['out']}/kept.jsonl, rejected.jsonl, report.json, similarity_hist.png, "
        "kept_vs_threshold.png"
    )


if __name__ == "__main__":
    check_overrides(sys.argv[1:], "filter")
    main()
