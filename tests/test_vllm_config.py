"""Multi-GPU generation for evaluation is chosen by config (`system.backend=vllm system.tensor_parallel_size=N`, the
run's adapter as a LoRARequest); on a machine without a GPU the config error says so in one line, before any model
is loaded."""

import re

import pytest
from omegaconf import OmegaConf

from arastory.errors import ConfigError
from arastory.evaluate.systems import HFSystem, _check_backend
from arastory.paths import CONF_DIR
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny_model_dir():
    from arastory.train.tiny import build_tiny_model

    return build_tiny_model(**OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"])


def test_vllm_without_a_gpu_is_one_config_line(tmp_path, tiny_model_dir):
    proc = run_cli(
        [
            "evaluate.py",
            "system=hf",
            f"system.model={tiny_model_dir}",
            "system.backend=vllm",
            "system.tensor_parallel_size=2",
            "judge=none",
            f"out={tmp_path / 'eval'}",
        ],
        env={"CUDA_VISIBLE_DEVICES": ""},
    )  # no GPU visible, on any machine
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "config error: system.backend: vllm needs a CUDA GPU and this machine has none; use system.backend=hf"
    )
    assert not list((tmp_path / "eval").glob("generations*.jsonl")), "nothing generated"


def test_tensor_parallel_size_is_checked_and_carried():
    with pytest.raises(ConfigError, match=re.escape("system.tensor_parallel_size: must be a positive integer, got 0")):
        _check_backend("hf", 0)
    for name in ("run", "hf"):
        assert OmegaConf.load(CONF_DIR / "system" / f"{name}.yaml").tensor_parallel_size == 1
    assert HFSystem(model="x", tensor_parallel_size=4).tensor_parallel_size == 4
