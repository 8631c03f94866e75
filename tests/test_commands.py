"""The `arastory` console script: its listing, delegation to each step's Hydra help, one-line errors, and the same
Hydra job (and so the same log file name) whichever way train and evaluate are started."""

import subprocess
import sys
from pathlib import Path

import pytest

from arastory.commands import COMMANDS, main
from tests.conftest import REPO, run_cli


def test_help_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert sum(line.split()[:1] == [name] for line in out.splitlines()) == 1, name
        assert command.summary in out
    assert set(COMMANDS) >= {"train", "translate", "filter", "synthesize", "evaluate", "dialect", "data"}


def test_each_command_help_shows_only_its_own_groups_with_their_comments(tmp_path, monkeypatch, capsys):
    # In one process (a subprocess per command cost ~18 s on 2 busy cores); the installed script is run once below.
    groups = {
        "translate": ("translator:", "judge:"),
        "filter": ("encoder:", "strategy:"),
        "synthesize": ("generator:", "translator:"),
        "train": ("strategy:", "translator:"),
        "evaluate": ("judge:", "encoder:"),
        "dialect": ("dialect_id:", "strategy:"),
    }
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exited:
            main([name, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code in (0, None), (name, capsys.readouterr().err[-2000:])
        if name == "data":  # not a Hydra command: its help is its usage
            assert out.startswith("`python -m arastory.data fetch <dataset> out=<dir>"), out[:300]
            continue
        own, other = groups[name]
        assert f"  {own}" in out and f"  {other}" not in out, (name, out[:2000])
        assert "Config groups" in out and "Settings (override with key=value" in out and "hydra:" not in out, name
    train_help = subprocess.run(
        [sys.executable, "-m", "arastory.train", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    ).stdout
    assert '   *direct      Model A ("direct"): one stage on the synthetic stories only.' in train_help
    assert "  batch_size: 4         # ours; the study used 1" in train_help  # the YAML's comments are kept
    assert list(tmp_path.iterdir()) == [], "help writes nothing"

    script = Path(sys.executable).parent / "arastory"  # installed by `pip install -e .` ([project.scripts])
    proc = subprocess.run([str(script), "data", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "python -m arastory.data fetch" in proc.stdout, proc.stderr[-2000:]


def test_an_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "arastory: 'trian' is not one of: translate, filter, synthesize, train, evaluate, dialect, data "
        "(see `arastory --help`)\n"
    )
    assert main([]) == 2


def test_train_and_evaluate_keep_their_job_names_whichever_way_they_start(tmp_path):
    for name in ("train", "evaluate"):
        starts = [[str(REPO / f"{name}.py")], ["-m", f"arastory.{name}"], ["-m", "arastory", name]]
        for start in starts:
            proc = run_cli([*start, "--cfg", "hydra", "--package", "hydra.job"], cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert f"\nname: {name}\n" in proc.stdout, (start, proc.stdout[:300])
