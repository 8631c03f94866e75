"""W&B in the training recipe: the run is finished whatever happens, marked failed when training raised."""

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.paths import CONF_DIR
from arastory.train.recipe import open_loggers
from tests.wandb_history import exit_codes


def test_a_failed_run_still_closes_its_wandb_run_marked_failed(tmp_path):
    import wandb

    register_resolvers()
    for run_dir in ("failed", "ok"):
        (tmp_path / run_dir).mkdir()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=wandb", "dialect=egy"])
    with pytest.raises(RuntimeError, match="a stage failed"):
        with open_loggers(cfg, tmp_path / "failed", zero=True) as loggers:
            loggers[0].log_metrics({"train/loss": 1.0}, step=0)
            raise RuntimeError("a stage failed")
    assert wandb.run is None, "the W&B run is closed"
    with open_loggers(cfg, tmp_path / "ok", zero=True) as loggers:
        loggers[0].log_metrics({"train/loss": 1.0}, step=0)
    assert wandb.run is None
    wandb.teardown()  # stops W&B's service once it has written every finished run's records
    assert exit_codes(tmp_path / "failed") == [1] and exit_codes(tmp_path / "ok") == [0]
