"""Shared test setup: offline hubs, a session cache for the tiny model, and a helper to run the CLIs."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RELEASED = SHARED / "data" / "arastories"

# Nothing may be downloaded; the tiny model and caches live in one temporary dir per test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ARASTORY_CACHE", tempfile.mkdtemp(prefix="arastory-test-cache-"))

# Small, fast settings for end-to-end runs of train.py (the real code path, just fewer steps).
FAST_TRAIN = [
    "logger=csv",
    "data.synthetic.size=6",
    "data.translated.size=6",
    "batch_size=2",
    "data.max_length=160",
    "strategy.stages.0.max_steps=3",
    "sample.max_new_tokens=8",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]


def run_cli(
    args: list[str], cwd: Path = REPO, timeout: int = 600, check: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def wait_until(ready, proc: subprocess.Popen, what: str = "the awaited point") -> None:
    """Poll until `ready()` holds; fail at once, with the process's stderr, if `proc` ends first. No time limit: the
    process's work is finite, so a loaded machine makes this slower, never a failure."""
    while not ready():
        if proc.poll() is not None:
            if ready():
                return
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def released_dir() -> Path:
    if not RELEASED.exists():
        pytest.skip(f"the study's released data is not at {RELEASED}")
    return RELEASED


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from omegaconf import OmegaConf

    from arastory.paths import CONF_DIR
    from arastory.train.model import load_tokenizer
    from arastory.train.tiny import build_tiny_model

    spec = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml"))["tiny"]
    return load_tokenizer(build_tiny_model(**spec))
