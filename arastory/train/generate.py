"""Write a few stories with the trained model for held-out prompts, so every run shows what it learned."""

from __future__ import annotations

import torch

from arastory.records import StoryRecord


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def generate_story(model, formatter, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
                   top_p: float = 0.95, do_sample: bool = True) -> str:
    """One story; generation stops at EOS or at the chat template's end-of-turn token, whichever comes first."""
    tokenizer = formatter.tokenizer
    ids = torch.tensor([formatter.prompt_ids(prompt)], device=model_device(model))
    output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                            do_sample=do_sample, temperature=temperature if do_sample else None,
                            top_p=top_p if do_sample else None, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=formatter.stop_token_ids)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip()


def generate_samples(model, formatter, val_sets: dict[str, list[StoryRecord]], sample_cfg,
                     device: torch.device | None = None) -> list[dict]:
    """`sample_cfg.per_variety` stories per variety (the first held-out prompts of each), on `device` (the training
    device: the model is moved there only if it is not already)."""
    if device is not None and model_device(model) != device:
        model.to(device)
    was_training = model.training
    model.eval()
    torch.manual_seed(sample_cfg.seed)
    rows = []
    for variety, records in val_sets.items():
        for record in records[: sample_cfg.per_variety]:
            story = generate_story(model, formatter, record.prompt, sample_cfg.max_new_tokens,
                                   sample_cfg.temperature, sample_cfg.top_p, sample_cfg.do_sample)
            rows.append({"id": record.id, "variety": variety, "prompt": record.prompt, "story": story})
    model.train(was_training)
    return rows
