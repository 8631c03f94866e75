"""The local `hf` generator on the tiny model: left-padded batches, token usage, resume, and gating of its output."""

import pytest
from hydra import compose, initialize_config_dir

from arastory.cli import register_resolvers
from arastory.io import read_jsonl
from arastory.paths import CONF_DIR
from arastory.prompts import PromptSampler
from arastory.synthesize import HFGenerator
from arastory.synthesize.run import synthesize

register_resolvers()


@pytest.fixture(scope="module")
def loaded():
    generator = HFGenerator("tiny", batch_size=3, max_new_tokens=6, do_sample=False)
    return generator, generator.load()


def test_left_padded_batches_generate_what_single_prompts_do(loaded):
    generator, (model, tokenizer, formatter) = loaded
    assert tokenizer.padding_side == "left" and not formatter.uses_chat_template
    prompts = [p.prompt for p in PromptSampler("msa", seed=0).sample(3)]
    prompts[0] = prompts[0][:60]  # much shorter than the others, so the batch pads it
    batched = generator.generate_batch(model, tokenizer, formatter, prompts)
    alone = [generator.generate_batch(model, tokenizer, formatter, [p])[0] for p in prompts]
    assert [text for text, _ in batched] == [text for text, _ in alone]
    lengths = [len(tokenizer(formatter.prompt_text(p))["input_ids"]) for p in prompts]
    assert [usage["prompt_tokens"] for _, usage in batched] == lengths  # padding is not counted
    assert all(0 < usage["completion_tokens"] <= 6 for _, usage in batched)


def test_hf_synthesis_writes_the_ledger_gates_and_resumes(tmp_path, monkeypatch):
    overrides = [
        "generator=hf",
        "variety=egy",
        "n=5",
        f"out={tmp_path}",
        "generator.batch_size=2",
        "generator.max_new_tokens=6",
        "generator.do_sample=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="synthesize", overrides=overrides)
    loads, original = [], HFGenerator._load
    monkeypatch.setattr(HFGenerator, "_load", lambda self: loads.append(1) or original(self))
    report = synthesize(cfg, tmp_path)
    assert report["generator"] == "hf" and report["model"] == "arastory-tiny"
    # Nothing passes, so a second round asks the rest of max_attempts (2 x n) with the model loaded once.
    assert report["generated"] == 10 and report["this_run"]["answered"] == 10 and report["failed"] == 0
    assert report["this_run"]["rounds"] == 2 and loads == [1] and report["stopped"] == "max_attempts (10) prompts sent"
    assert report["kept"] == 0 and report["rejected_total"] == 10  # 6 random tokens are never a story
    assert report["estimated_cost_usd"] is None  # no price for a local model
    ledger = read_jsonl(tmp_path / "generations.jsonl")
    assert [r["id"] for r in ledger] == [f"egy-s0-{i:06d}" for i in range(10)]
    assert report["tokens"]["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in ledger) > 0
    rejected = read_jsonl(tmp_path / "rejected.jsonl")
    assert all(r["meta"]["generator"] == "hf" and r["reason"] in ("empty", "too_short") for r in rejected)

    again = synthesize(cfg, tmp_path)  # everything answered: the model is not even loaded
    assert again["this_run"]["answered"] == 0 and again["this_run"]["already_answered"] == 10
