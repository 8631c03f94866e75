"""The `arastory` console script: its listing, delegation to each step's Hydra help, one-line errors, and the same
Hydra job (and so the same log file name) whichever way train and evaluate are started."""

import os
import subprocess
import sys
from pathlib import Path

from arastory.commands import COMMANDS, main
from tests.conftest import REPO, run_cli


def test_help_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert sum(line.split()[:1] == [name] for line in out.splitlines()) == 1, name
        assert command.summary in out
    assert set(COMMANDS) >= {"train", "translate", "filter", "synthesize", "evaluate"}


def test_each_command_help_is_its_hydra_help(tmp_path):
    script = Path(sys.executable).parent / "arastory"  # installed by `pip install -e .` ([project.scripts])
    groups = {
        "translate": "translator:",
        "filter": "encoder:",
        "synthesize": "generator:",
        "train": "strategy:",
        "evaluate": "judge:",
    }
    for name in COMMANDS:
        proc = subprocess.run(
            [str(script), name, "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "powered by Hydra" in proc.stdout and "== Configuration groups ==" in proc.stdout, name
        assert groups.get(name, "") in proc.stdout, name
    assert list(tmp_path.iterdir()) == [], "help writes nothing"


def test_an_unknown_command_is_one_line_and_exit_2(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "arastory: 'trian' is not one of: translate, filter, synthesize, train, evaluate (see `arastory --help`)\n"
    )
    assert main([]) == 2


def test_train_and_evaluate_keep_their_job_names_whichever_way_they_start(tmp_path):
    for name in ("train", "evaluate"):
        starts = [[str(REPO / f"{name}.py")], ["-m", f"arastory.{name}"], ["-m", "arastory", name]]
        for start in starts:
            proc = run_cli([*start, "--cfg", "hydra", "--package", "hydra.job"], cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert f"\nname: {name}\n" in proc.stdout, (start, proc.stdout[:300])
