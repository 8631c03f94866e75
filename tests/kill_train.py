"""Test helper: train and SIGKILL the process at a chosen point (hooks installed here, not in product code).

    python tests/kill_train.py POINT [train.py overrides...]      # `python train.py ...`, killed at POINT

Tests call `train_then_die` in a child process forked from a server that has already imported the training stack,
which saves the ~6 s of imports per killed process.

POINT is one of
    step:S:N        stage S, right after the training step that reaches global step N (after that step's checkpoint)
    validation:S:E  stage S, in the first validation batch of epoch E of the fit
    boundary:S      stage S > 0 is about to load stage S-1's adapter (stage S-1 finished, stage S not started)
    sampling:N      in the N-th batch of stories written after training
"""

import os
import runpy
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def in_stage(trainer, stage: str) -> bool:
    return Path(trainer.default_root_dir).name.startswith(f"{stage}_")


def install(point: str) -> None:
    from arastory.train import generate, module, recipe

    kind, *params = point.split(":")
    if kind == "step":
        stage, step = params

        def on_train_batch_end(self, outputs, batch, batch_idx):
            if in_stage(self.trainer, stage) and self.trainer.global_step == int(step):
                die()

        module.StoryLM.on_train_batch_end = on_train_batch_end
    elif kind == "validation":
        stage, epoch = params
        validation_step = module.StoryLM.validation_step

        def killing_validation_step(self, *args, **kwargs):
            trainer = self.trainer
            if trainer.state.fn == "fit" and in_stage(trainer, stage) and trainer.current_epoch == int(epoch):
                die()
            return validation_step(self, *args, **kwargs)

        module.StoryLM.validation_step = killing_validation_step
    elif kind == "boundary":
        (stage,) = params
        restore = recipe.restore_previous_stage

        def killing_restore(model, prev_dir, *args):
            if Path(prev_dir).name.startswith(f"{int(stage) - 1}_"):
                die()
            return restore(model, prev_dir, *args)

        recipe.restore_previous_stage = killing_restore
    elif kind == "sampling":
        (n,) = params
        stories, calls = generate.generate_batch, []

        def killing_batch(*args, **kwargs):
            calls.append(1)
            if len(calls) == int(n):
                die()
            return stories(*args, **kwargs)

        generate.generate_batch = killing_batch
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def train_then_die(point: str, run_dir: str, overrides: list[str] | None = None) -> None:
    """What `python train.py OVERRIDES hydra.run.dir=RUN_DIR` (or, without overrides, `resume=RUN_DIR`) does, killed
    at POINT; run it in a child process."""
    from omegaconf import OmegaConf

    from arastory.cli import register_resolvers
    from arastory.train.recipe import train

    install(point)
    register_resolvers()
    if overrides is None:
        cfg = OmegaConf.load(Path(run_dir) / "config.yaml")
    else:
        from hydra import compose, initialize_config_dir

        from arastory.paths import CONF_DIR

        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    train(cfg, run_dir)
    raise SystemExit(f"{point} was never reached")


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = [str(REPO / "train.py"), *sys.argv[2:]]
    os.chdir(REPO)
    runpy.run_path(str(REPO / "train.py"), run_name="__main__")
