"""One name for the variety setting on every command (`dialect=`); the old names still work, with a one-line note."""

import json

from arastory.cli import renamed_overrides
from tests.conftest import run_cli
from tests.test_evaluate import evaluate_cli, lines, released_format_csvs


def test_old_names_are_rewritten_with_a_note_and_prefixes_kept(capsys):
    argv = ["variety=egy", "+variety.name=x", "n=3", "-m", "dialect=mor"]
    rewritten = renamed_overrides(argv, {"variety": "dialect"})
    assert rewritten == ["dialect=egy", "+variety.name=x", "n=3", "-m", "dialect=mor"]
    assert capsys.readouterr().err == "note: variety= is now dialect= (the old name still works)\n"
    mapped = renamed_overrides(["dialect=egy,mor", "~dialect"], {}, {"dialect": "variety"})
    assert mapped == ["variety=egy,mor", "~dialect"]
    assert capsys.readouterr().err == ""


def test_synthesize_takes_dialect_and_the_old_variety_with_a_note(tmp_path):
    for name, arg in (("new", "dialect=mor"), ("old", "variety=mor")):
        proc = run_cli(["-m", "arastory.synthesize", arg, "n=2", "dry_run=true", f"out={tmp_path / name}"], check=True)
        prompts = [json.loads(line) for line in (tmp_path / name / "prompts.jsonl").read_text().splitlines()]
        assert prompts and {p["variety"] for p in prompts} == {"mor"}
        note = "note: variety= is now dialect= (the old name still works)"
        assert (note in proc.stderr) == (name == "old"), proc.stderr
    proc = run_cli(["-m", "arastory.synthesize", "dialect=lev", f"out={tmp_path / 'bad'}"])
    assert proc.returncode == 2 and proc.stderr.strip() == "config error: dialect: 'lev' is not one of: egy, mor, msa"


def test_evaluate_takes_dialect_and_the_old_varieties_with_a_note(tmp_path):
    released_format_csvs(tmp_path / "csvs")  # egy and mor stories
    out = tmp_path / "eval"
    proc = evaluate_cli(
        [
            "system=file",
            f"system.path={tmp_path / 'csvs'}",
            "system.n_per_variety=3",
            "dialect=egy",
            "judge=none",
            "wandb.enabled=false",
            "diversity.subsample=2",
            "diversity.repeats=2",
            f"out={out}",
        ],
        key=None,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {g["variety"] for g in lines(out / "generations.jsonl")} == {"egy"}
    proc = evaluate_cli(["varieties=[egy,lev]", f"out={tmp_path / 'bad'}"], key=None)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "note: varieties= is now dialect= (the old name still works)",
        "config error: dialect: 'lev' is not one of: msa, egy, mor, all",
    ]
