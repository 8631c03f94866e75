"""Write stories with a local model in left-padded batches: the few samples every run writes for held-out prompts, and
evaluation's local generation (`arastory.evaluate.systems.LocalGenerator`). A story stops at EOS or at the chat
template's end-of-turn token, whichever comes first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from omegaconf import DictConfig
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from arastory.data.stored import AnyStory
    from arastory.train.formatting import ExampleFormatter


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def left_padded(prompt_ids: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), padded on the left so every prompt ends where generation starts."""
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    return input_ids, attention


def decode_new_tokens(new_ids: list[int], tokenizer: PreTrainedTokenizerBase, stop_ids: list[int]) -> dict:
    """The story in the tokens after the prompt, cut at the first stop token: {story, meta: {new_tokens, finished,
    finish_reason}}; new_tokens counts the story's tokens (not the stop token, not the padding after it)."""
    stops = set(stop_ids)
    end = next((k for k, token in enumerate(new_ids) if token in stops), None)
    story_ids = new_ids if end is None else new_ids[:end]
    return {
        "story": str(tokenizer.decode(story_ids, skip_special_tokens=True)).strip(),
        "meta": {
            "new_tokens": len(story_ids),
            "finished": end is not None,
            "finish_reason": "length" if end is None else "stop",
        },
    }


@torch.no_grad()
def generate_batch(
    model: PreTrainedModel | PeftModel,
    formatter: ExampleFormatter,
    prompts: list[str],
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_p: float = 0.95,
    do_sample: bool = True,
) -> list[dict]:
    """One story per prompt from a single `generate` call (see `decode_new_tokens` for each row's dict)."""
    tokenizer, stops = formatter.tokenizer, formatter.stop_token_ids
    input_ids, attention = left_padded([formatter.prompt_ids(p) for p in prompts], tokenizer.pad_token_id)
    device = model_device(model)
    output = model.generate(  # type: ignore[operator]  # a PeftModel forwards generate to its base model
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stops,
    )
    return [decode_new_tokens(row[input_ids.shape[1] :].tolist(), tokenizer, stops) for row in output]


def generate_story(
    model: PreTrainedModel | PeftModel,
    formatter: ExampleFormatter,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_p: float = 0.95,
    do_sample: bool = True,
) -> str:
    return generate_batch(model, formatter, [prompt], max_new_tokens, temperature, top_p, do_sample)[0]["story"]


def generate_samples(
    model: PreTrainedModel | PeftModel,
    formatter: ExampleFormatter,
    val_sets: Mapping[str, Sequence[AnyStory]],
    sample_cfg: DictConfig,
    device: torch.device | None = None,
) -> list[dict]:
    """`sample_cfg.per_variety` stories per variety (the first held-out prompts of each), in batches of
    `sample_cfg.batch_size`, on `device` (the training device: the model is moved there only if it is not already)."""
    if device is not None and model_device(model) != device:
        model.to(device)  # type: ignore[arg-type]  # transformers' @wraps(nn.Module.to) hides the bound self
    was_training = model.training
    model.eval()
    torch.manual_seed(sample_cfg.seed)
    todo = [(variety, record) for variety, records in val_sets.items() for record in records[: sample_cfg.per_variety]]
    size = max(1, int(sample_cfg.get("batch_size", 16)))
    rows = []
    for start in range(0, len(todo), size):
        batch = todo[start : start + size]
        stories = generate_batch(
            model,
            formatter,
            [record.prompt for _, record in batch],
            sample_cfg.max_new_tokens,
            sample_cfg.temperature,
            sample_cfg.top_p,
            sample_cfg.do_sample,
        )
        rows += [
            {"id": record.id, "variety": variety, "prompt": record.prompt, "story": story["story"]}
            for (variety, record), story in zip(batch, stories, strict=False)
        ]
    model.train(was_training)
    return rows
