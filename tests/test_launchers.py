"""Sweeps through Hydra launchers: `hydra/launcher=submitit_local` runs the jobs of a sweep as parallel processes,
each in its own run dir (the sweep dir created once, by the launching process); the SLURM and joblib presets
compose into the plugins' launchers; the experiment scripts pass the launcher on.

Cost: one sweep of two tiny jobs (about 1 minute on 2 idle cores); the rest is composition only."""

import json
import os
import subprocess

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from arastory.paths import CONF_DIR
from tests.conftest import REPO, run_cli

SMALL = [
    "data.synthetic.size=6",
    "batch_size=2",
    "data.max_length=144",
    "sample.max_new_tokens=4",
    "trainer.enable_progress_bar=false",
]


def test_submitit_local_sweep_runs_each_job_in_its_own_run_dir(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "train.py",
            "-m",
            "hydra/launcher=submitit_local",
            "dialect=msa,egy",
            "strategy.stages.0.max_steps=5",
            "logger=csv",
            f"hydra.sweep.dir={sweep}",
            *SMALL,
        ],
        check=True,
    )
    assert "Submitit 'local' sweep output dir" in proc.stderr + proc.stdout
    job_dirs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert [p.name for p in job_dirs] == ["0", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"], "no second sweep dir made by a job process"
    for job_dir, variety in zip(job_dirs, ["msa", "egy"], strict=False):
        metrics = json.loads((job_dir / "metrics.json").read_text())
        assert metrics["global_step"] == 5 and metrics["data"]["synthetic"]["train_per_variety"] == {variety: 6}
        assert yaml.safe_load((job_dir / "config.yaml").read_text())["dialect"] == variety
        assert (job_dir / ".hydra" / "overrides.yaml").exists()
    logs = list((sweep / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2, "each job ran as its own submitit process"


def test_default_sweep_dir_is_shared_by_job_processes(tmp_path):
    """The sweep dir's resolver (`fresh_dir`) runs once, in the launching process; the jobs reuse its answer."""
    from omegaconf import OmegaConf

    from arastory.cli import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_local"], return_hydra_config=True)
    OmegaConf.update(cfg, "hydra.sweep.dir", f"${{fresh_dir:{tmp_path}/multirun/x}}", force_add=True)
    first = str(cfg.hydra.sweep.dir)
    copy = OmegaConf.create(OmegaConf.to_container(cfg.hydra.sweep, resolve=False))  # what a job composes anew
    import pickle

    from arastory import cli

    restored = pickle.loads(pickle.dumps(cfg))  # what submitit and joblib send to a job process
    cli._FRESH_DIRS.clear()  # ... which has not resolved anything itself
    OmegaConf.copy_cache(from_config=restored, to_config=copy)
    assert str(copy.dir) == first == f"{tmp_path}/multirun/x"
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir()) == ["x"]


@pytest.mark.parametrize(
    "preset, target, knobs",
    [
        (
            "submitit_slurm",
            "SlurmLauncher",
            {"partition": "gpu", "gpus_per_node": 8, "tasks_per_node": 8, "timeout_min": 600},
        ),
        ("submitit_local", "LocalLauncher", {"timeout_min": 30}),
        ("joblib", "JoblibLauncher", {"n_jobs": 2}),
    ],
)
def test_launcher_presets_build_the_plugins_launchers(preset, target, knobs, tmp_path):
    overrides = [
        f"hydra/launcher={preset}",
        f"hydra.sweep.dir={tmp_path}",
        *[f"hydra.launcher.{k}={v}" for k, v in knobs.items()],
    ]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == target
    settings = launcher.params if hasattr(launcher, "params") else launcher.joblib
    assert all(settings[k] == v for k, v in knobs.items())


def test_experiment_scripts_take_the_launcher_as_their_first_argument(tmp_path):
    env = {**os.environ, "PY": "echo"}  # print the commands instead of running them
    out = subprocess.run(
        ["bash", "experiments/size_sweep/run.sh", "submitit_slurm", "hydra.launcher.partition=gpu"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0].startswith("train.py -m hydra/launcher=submitit_slurm hydra.launcher.partition=gpu strategy=direct")
    default = subprocess.run(
        ["bash", "experiments/dialect_strategy_sweep/run.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert default[0].startswith("train.py -m hydra/launcher=basic strategy=direct,sequential")
