"""The train command's Hydra main (arastory/conf/train.yaml): `arastory train`, `python -m arastory.train`, `train.py`.

    arastory train                                      # tiny offline default on the bundled corpus (CPU, minutes)
    arastory train strategy=sequential dialect=egy model=acegpt_7b trainer=gpu
    arastory train -m strategy=direct,sequential dialect=msa,egy,mor
    arastory train resume=outputs/train/2026-11-27/12-00-00

Hydra names the job after this module (`train`), so run dirs keep their `train.log` whichever way it is started.
"""

import sys
from typing import cast

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arastory.cli import check_overrides, guard_run_dir, one_line_errors, register_resolvers
from arastory.paths import CONF_DIR

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
@one_line_errors
@guard_run_dir  # the run dir's lock and record are rank 0's when SLURM or torchrun start several processes
def main(cfg: DictConfig) -> dict:
    from arastory.train.checks import check_config

    run_dir = HydraConfig.get().runtime.output_dir
    if cfg.resume:  # hydra.run.dir already points at the resumed run dir
        cfg = cast(DictConfig, OmegaConf.load(f"{cfg.resume}/config.yaml"))  # written by us: a mapping
    check_config(cfg)  # bad values stop here, before torch and Lightning are even imported

    from arastory.train.ranks import is_rank_zero
    from arastory.train.recipe import train
    from arastory.train.report import print_summary

    metrics = train(cfg, run_dir)
    if is_rank_zero():
        print_summary(run_dir, metrics)
    return metrics


def run() -> None:
    """Check the command line's overrides (one-line errors before Hydra starts), then run the Hydra main."""
    check_overrides(sys.argv[1:], "train")
    refuse_a_taken_out_dir(sys.argv[1:])
    from arastory.train.ranks import check_launch

    check_launch(sys.argv[1:])
    main()


def refuse_a_taken_out_dir(argv: list[str]) -> None:
    """`out=` names a new run dir: one that already holds a run is continued only with `resume=`, never overwritten."""
    from pathlib import Path

    from arastory.cli import fail

    out = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("out=")), None)
    if out and out != "null" and (Path(out) / "config.yaml").exists():
        fail(
            f"config error: out: '{out}' already holds a training run; continue it with resume={out}, "
            "or choose another out"
        )
