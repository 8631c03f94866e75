"""One-line errors where the commands printed tracebacks or multi-line Hydra errors (D15, D17), secrets redacted in
Hydra's own record of a run (.hydra/), and run dirs that are never shared."""

import datetime as dt
import os
import subprocess
import sys

from arastory.redact import REDACTED
from tests.conftest import REPO, run_cli

CANARY = "test-canary-" + "0cc175b9c0f1b6a831c399e269772661"


def cli(args, cwd=REPO, **env):
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "OPENAI_API_KEY": "test-key-cli", **env},
    )


def test_a_single_variety_dialect_source_and_an_api_key_override_are_one_line(tmp_path):  # D15
    source = tmp_path / "stories_egy.jsonl"
    bundled = (REPO / "arastory" / "data" / "bundled" / "stories_egy.jsonl").read_text(encoding="utf-8")
    source.write_text(bundled, encoding="utf-8")
    proc = cli(
        [
            "-m",
            "arastory.synthesize",
            "dialect=egy",
            "n=2",
            f"out={tmp_path / 'a'}",
            f"dialect_id.source={source}",
            "dialect_id.use_cache=false",
        ]
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "config error: dialect_id.source: the dialect classifier needs "
        "labelled text of all three varieties (msa, egy, mor), got egy"
    )
    proc = cli(["-m", "arastory.synthesize", "+generator.api_key=", f"out={tmp_path / 'b'}"])
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("config error: generator.api_key: secrets are never taken from the command line")


def test_the_default_labse_encoder_without_a_hub_says_what_to_do(tmp_path):  # D17
    proc = cli(
        ["-m", "arastory.filter", "input=bundled", f"out={tmp_path}", "wandb.mode=disabled"],
        HF_HUB_OFFLINE="1",
        ARASTORY_CACHE=str(tmp_path / "cache"),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("config error: encoder.model: 'sentence-transformers/LaBSE' cannot be loaded (")
    assert last.endswith(
        "download it once with network access (it is cached), or set encoder.model=<local dir>, "
        "or use encoder=lexicon (offline)"
    )


def test_hydra_record_is_written_by_us_with_secrets_from_config_files_redacted(tmp_path, monkeypatch):
    """D8: .hydra/{config,hydra,overrides}.yaml held secrets in clear; a key in a config file is redacted there."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from arastory.cli import write_hydra_record
    from arastory.paths import CONF_DIR

    monkeypatch.setenv("MY_PROXY_TOKEN", CANARY)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="translate", overrides=["translator=openai", "out=x"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.translator.api_key = "written-in-a-yaml-file"  # a secret-named key
        cfg.translator.base_url = f"http://proxy/?token={CANARY}"  # an env secret inside an ordinary value
        cfg.hydra.overrides.task.append(f"translator.base_url=http://proxy/?token={CANARY}")
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    write_hydra_record(tmp_path / ".hydra", cfg, hydra_cfg)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        text = (tmp_path / ".hydra" / name).read_text()
        assert CANARY not in text and "written-in-a-yaml-file" not in text, name
    assert f"api_key: '{REDACTED}'" in (tmp_path / ".hydra" / "config.yaml").read_text()
    assert f"translator.base_url={REDACTED}" in (tmp_path / ".hydra" / "overrides.yaml").read_text()


def test_a_run_dir_already_taken_is_never_shared(tmp_path):  # D3
    now = dt.datetime.now()
    taken = [now + dt.timedelta(seconds=s) for s in range(-1, 40)]  # every dir the run could pick is taken
    for moment in taken:
        path = tmp_path / "outputs" / "filter" / moment.strftime("%Y-%m-%d") / moment.strftime("%H-%M-%S")
        path.mkdir(parents=True, exist_ok=True)
        (path / "report.json").write_text("{}")
    proc = run_cli(
        [
            str(REPO / "arastory" / "filter" / "__main__.py"),
            "input=bundled",
            "encoder=lexicon",
            "wandb.mode=disabled",
            "filter.plots=false",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reports = [p for p in (tmp_path / "outputs").rglob("report.json") if p.read_text() != "{}"]
    assert len(reports) == 1 and reports[0].parent.name.endswith("_2")
    assert sorted(p.name for p in reports[0].parent.iterdir()) == [
        ".arastory.lock",
        ".hydra",
        "filter.log",
        "kept.jsonl",
        "rejected.jsonl",
        "report.json",
    ]
