"""Fine-tune a causal LM on Arabic prompt→story data with QLoRA; Hydra composes the run from arastory/conf/.
A thin entry point: the same as `arastory train ...` and `python -m arastory.train ...` (arastory/commands/train.py).

    python train.py                                      # tiny offline default on the bundled corpus (CPU, minutes)
    python train.py strategy=sequential dialect=egy model=acegpt_7b trainer=gpu
    python train.py -m strategy=direct,sequential dialect=msa,egy,mor
    python train.py resume=outputs/train/2026-11-27/12-00-00
    python train.py trainer=ddp model=acegpt_7b batch_size=8              # every GPU of this machine (docs/scaling.md)
"""

from arastory.commands.train import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
