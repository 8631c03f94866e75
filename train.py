"""Fine-tune a causal LM on Arabic prompt→story data with QLoRA; Hydra composes the run from conf/.

    python train.py                                      # tiny offline default on the bundled corpus (CPU, minutes)
    python train.py strategy=sequential dialect=egy model=acegpt_7b trainer=gpu
    python train.py -m strategy=direct,sequential dialect=msa,egy,mor
    python train.py resume=outputs/train/2026-11-27/12-00-00
    python train.py trainer=ddp model=acegpt_7b batch_size=8              # every GPU of this machine (docs/scaling.md)
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from arastory.cli import check_overrides, guard_run_dir, one_line_errors, register_resolvers

register_resolvers()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@one_line_errors
@guard_run_dir   # the run dir's lock and record are rank 0's when SLURM or torchrun start several processes
def main(cfg: DictConfig) -> dict:
    from arastory.train.checks import check_config

    run_dir = HydraConfig.get().runtime.output_dir
    if cfg.resume:  # hydra.run.dir already points at the resumed run dir
        cfg = OmegaConf.load(f"{cfg.resume}/config.yaml")
    check_config(cfg)  # bad values stop here, before torch and Lightning are even imported

    from arastory.train.recipe import train
    from arastory.train.report import print_summary

    metrics = train(cfg, run_dir)
    from arastory.train.ranks import is_rank_zero
    if is_rank_zero():
        print_summary(run_dir, metrics)
    return metrics


if __name__ == "__main__":
    check_overrides(sys.argv[1:], "train")
    from arastory.train.ranks import check_launch
    check_launch(sys.argv[1:])
    main()
