"""Config composition and fail-fast errors: every group option composes; bad values stop before any model is built."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from arastory.cli import config_groups, register_resolvers
from arastory.paths import CONF_DIR
from arastory.train.checks import check_config
from tests.conftest import FAST_TRAIN, run_cli

register_resolvers()


def compose_train(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=False)


TRAIN_GROUPS = ["data", "model", "quant", "peft", "strategy", "trainer", "logger", "experiment"]


@pytest.mark.parametrize("group,option", [(g, o) for g in TRAIN_GROUPS for o in config_groups()[g]])
def test_every_option_composes_and_passes_checks(group, option):
    cfg = compose_train([f"{group}={option}"])
    check_config(cfg)
    assert cfg.strategy.stages and cfg.data.synthetic._target_
    if group == "quant":
        quant = instantiate(cfg.quant)
        assert (quant is None) == (option == "none")
        if quant is not None:
            assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    if group == "peft":
        lora = instantiate(cfg.peft, _convert_="all")
        assert lora.r == 8 and "q_proj" in lora.target_modules


def test_paper_experiments_carry_the_study_settings():
    for name, stages in (("paper_model_a", ["synthetic"]), ("paper_model_b", ["translated", "synthetic"])):
        cfg = compose_train([f"experiment={name}"])
        assert cfg.model.name_or_path == "FreedomIntelligence/AceGPT-7B"
        assert cfg.optim.lr == 4e-5 and cfg.batch_size == 1
        assert [s.data for s in cfg.strategy.stages] == stages
        assert cfg.strategy.stages[-1].max_epochs == 20
        assert cfg.experiment_name == name


def test_variety_config_files_are_documented():
    for path in CONF_DIR.rglob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#"), f"{path} must begin with a comment"
        assert "python " in path.read_text(encoding="utf-8").split("\n\n")[0] or "Usage" in path.read_text(), path


BAD = [
    (["dialect=lev"], "dialect: 'lev' is not one of: msa, egy, mor, all"),
    (["strategy=triple"], "strategy: 'triple' is not one of: direct, sequential"),
    (["model=gpt5"], "model: 'gpt5' is not one of:"),
    (["peft.r=0"], "peft.r: must be a positive integer, got 0"),
    (["optim.lr=-1"], "optim.lr: must be > 0, got -1"),
    (["optim.lr=abc"], "optim.lr: must be a number, got abc"),  # Structured Config (OptimSettings)
    (["optim.warmup_steps=-2"], "optim.warmup_steps: must be >= 0, got -2"),
    (["+optim.betas=[0.9,0.95]"], "optim.betas: is not a setting of optim (one of: lr, weight_decay, warmup_steps,"),
    (["strategy.stages.0.data=wikipedia"], "strategy.stages[0].data: 'wikipedia' is not one of: synthetic, translated"),
    (["data.synthetic.size=0"], "data.synthetic.size: must be a positive integer or null, got 0"),
    (
        ["model.name_or_path=/nonexistent/model"],
        "model.name_or_path: '/nonexistent/model' is neither an existing local path",
    ),
    (["data.synthetic.path=/nonexistent.jsonl"], "data.synthetic.path: '/nonexistent.jsonl' does not exist"),
    (["resume=/nonexistent/run"], "resume: '/nonexistent/run' is not a run dir"),
]


@pytest.mark.parametrize("overrides,message", BAD, ids=[b[0][0] for b in BAD])
def test_bad_config_fails_fast_with_one_line(overrides, message, tmp_path):
    extra = ["model.tiny=null"] if "model.name_or_path" in overrides[0] else []
    proc = run_cli(["train.py", *FAST_TRAIN, *extra, *overrides, f"hydra.run.dir={tmp_path}/run"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("config error: ") and message in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "stages").exists(), "no training may start"


# Types and choices checked by the dataclass schemas of arastory/train/checks.py (before them, the first four
# crashed with a TypeError traceback and the next three passed unchecked); ranges kept in their __post_init__.
SCHEMA_BAD = [
    ("peft.lora_alpha=abc", "peft.lora_alpha: must be a number, got abc"),
    ("data.val_fraction=x", "data.val_fraction: must be a number, got x"),
    ("strategy.stages.0.lr=abc", "strategy.stages[0].lr: must be a number, got abc"),
    ("strategy.stages.0.max_epochs=x", "strategy.stages[0].max_epochs: must be an integer or null, got x"),
    ("model.liger=perhaps", "model.liger: must be true or false, got perhaps"),
    ("data.overflow=cut", "data.overflow: 'cut' is not one of: truncate, drop"),
    ("+strategy.stages.0.epochs=3", "strategy.stages[0].epochs: is not a setting of strategy.stages[0] (one of: name,"),
    ("peft.r=abc", "peft.r: must be an integer, got abc"),
    ("peft.lora_dropout=1", "peft.lora_dropout: must be in [0, 1), got 1.0"),
    ("batch_size=x", "batch_size: must be an integer, got x"),
    ("data.split_seed=abc", "data.split_seed: must be an integer or null, got abc"),
    ("data.packing_max_tokens=-3", "data.packing_max_tokens: must be a positive integer or null, got -3"),
    (
        "model.attn_implementation=flash",
        "model.attn_implementation: 'flash' is not one of: auto, sdpa, eager, flash_attention_2, null",
    ),
    ("model.gradient_checkpointing=maybe", "model.gradient_checkpointing: must be true, false or auto, got maybe"),
]


@pytest.mark.parametrize("override,message", SCHEMA_BAD, ids=[b[0] for b in SCHEMA_BAD])
def test_schema_checks_name_the_key_value_and_allowed_values(override, message):
    from arastory.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        check_config(compose_train([override]))
    assert str(error.value).startswith(f"config error: {message}")


def test_empty_selection_fails_before_model(tmp_path):
    empty = tmp_path / "egy_only.jsonl"
    from arastory.data.bundled import story_file

    empty.write_text(story_file("egy").read_text(encoding="utf-8"), encoding="utf-8")
    proc = run_cli(
        ["train.py", *FAST_TRAIN, f"data.synthetic.path={empty}", "dialect=mor", f"hydra.run.dir={tmp_path}/run"]
    )
    assert proc.returncode == 2
    assert (
        "config error: data.synthetic: no training examples left for dialect=mor"
        in proc.stderr.strip().splitlines()[-1]
    )


def test_wandb_runs_are_named_grouped_and_tagged_by_strategy_dialect_experiment():
    cfg = compose_train(["strategy=sequential", "dialect=egy", "experiment=paper_model_b"])
    factory = instantiate(cfg.logger.wandb)
    assert factory.keywords["mode"] == "offline"
    assert factory.keywords["name"] == "sequential-egy" and factory.keywords["group"] == "paper_model_b"
    assert factory.keywords["tags"] == ["strategy:sequential", "dialect:egy", "experiment:paper_model_b"]
    assert compose_train([]).logger.wandb.group == "default"


def test_override_check_knows_each_entry_points_own_groups(capsys):
    from arastory.cli import check_overrides

    check_overrides(
        ["prompts=outputs/eval/a/prompts.jsonl", "judge=none"], "evaluate"
    )  # `prompts` is a plain key there
    with pytest.raises(SystemExit) as exit_info:
        check_overrides(["judge=gpt5"], "evaluate")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "config error: judge: 'gpt5' is not one of: hf, none, openai"
    with pytest.raises(SystemExit):
        check_overrides(["sampler=nope"], "synthesize")  # a config group in synthesize


def test_a_users_config_dir_extends_the_packaged_groups(tmp_path):
    """`--config-dir` (and hydra.searchpath) add a user's own options to the packaged groups; unknown ones fail."""
    (tmp_path / "model").mkdir()
    tiny = (CONF_DIR / "model" / "tiny.yaml").read_text(encoding="utf-8")
    (tmp_path / "model" / "mine.yaml").write_text(tiny.replace("hidden_size: 128", "hidden_size: 96"), encoding="utf-8")
    for args in (["--config-dir", str(tmp_path)], [f"hydra.searchpath=[file://{tmp_path}]"]):
        proc = run_cli(["train.py", *args, "model=mine", "--cfg", "job"])
        assert proc.returncode == 0 and "hidden_size: 96" in proc.stdout, proc.stderr[-2000:]
    proc = run_cli(["train.py", "model=mine", "--cfg", "job"])
    assert proc.returncode == 2 and proc.stderr.strip().startswith("config error: model: 'mine' is not one of: ")
