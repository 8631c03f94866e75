"""Training: model builders, QLoRA, example formatting, Lightning data and model modules, and the staged recipe."""
