"""Sample the study's 12 prompt features and render them as a prompt in a variety's own wording."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from arastory.paths import CONF_DIR
from arastory.plain import plain_dict
from arastory.prompts.varieties import Variety, load_variety

DEFAULT_SAMPLER_CONF = CONF_DIR / "sampler" / "default.yaml"


@dataclass
class SampledPrompt:
    variety: str
    features: dict[str, Any]
    prompt: str
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"id": self.id, "variety": self.variety, "prompt": self.prompt, "features": self.features}


def _value_key(value: Any) -> str:
    """Canonical id → the key used in variety configs (True → "true", 2 → "2")."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _typed(feature: str, key: str) -> Any:
    """Config key → the value stored in records: dialogue is a bool, n_characters an int."""
    if feature == "dialogue":
        return key == "true"
    if feature == "n_characters":
        return int(key)
    return key


class PromptSampler:
    """Draws features as the study did: always-present ones in every prompt, each other with probability p.

    Values are drawn uniformly from the variety's inventories; see `_present` for how optional features are drawn.
    """

    def __init__(
        self,
        variety: str | Variety,
        order: list[str] | None = None,
        always: list[str] | None = None,
        p_optional: float | None = None,
        seed: int = 0,
        balance_block: int | str | None = "default",
    ):
        defaults = plain_dict(OmegaConf.load(DEFAULT_SAMPLER_CONF))
        self.variety = load_variety(variety) if isinstance(variety, str) else variety
        self.order = list(order or defaults["order"])
        self.always = set(always or defaults["always"])
        self.p_optional = defaults["p_optional"] if p_optional is None else float(p_optional)
        if not 0.0 <= self.p_optional <= 1.0:
            from arastory.errors import ConfigError

            raise ConfigError("sampler.p_optional", f"must be in [0, 1], got {self.p_optional}")
        self.balance_block = defaults.get("balance_block") if balance_block == "default" else balance_block
        if self.balance_block is not None and int(self.balance_block) < 1:
            from arastory.errors import ConfigError

            raise ConfigError("sampler.balance_block", f"must be a positive integer or null, got {self.balance_block}")
        # Seeded per variety, so msa/egy/mor runs with the same seed draw independent feature sets.
        self.rng = random.Random(f"{self.variety.name}:{seed}")
        self._presence: dict[str, list[bool]] = {}

    def _present(self, feature: str) -> bool:
        """Whether an optional feature goes into the next prompt.

        balance_block=None: an independent coin with probability p (the study's scheme). balance_block=B (ours):
        each feature's presence comes from shuffled blocks of B prompts holding p*B presences (randomly rounded),
        so the per-prompt probability is still p and features stay independent of each other, but the share of
        prompts with each feature is p for any n instead of drifting by ±1/sqrt(n).
        """
        if not self.balance_block:
            return self.rng.random() < self.p_optional
        queue = self._presence.setdefault(feature, [])
        if not queue:
            block = int(self.balance_block)
            target = self.p_optional * block
            k = int(target) + (self.rng.random() < target - int(target))
            flags = [True] * k + [False] * (block - k)
            self.rng.shuffle(flags)
            queue.extend(flags)
        return queue.pop(0)

    def sample_features(self) -> dict[str, Any]:
        features = {}
        for feature in self.order:
            if feature in self.always or self._present(feature):
                key = self.rng.choice(self.variety.inventory(feature))
                features[feature] = _typed(feature, key)
        return features

    def render(self, features: dict[str, Any]) -> str:
        """The prompt for `features`, in feature order, then the variety requirement and the closing instruction."""
        parts = []
        for feature in self.order:
            if feature not in features:
                continue
            value = self.variety.values[feature][_value_key(features[feature])]
            template = self.variety.sentences[feature]
            if template is not None:  # a variety may null a sentence, as msa does `requirement`
                parts.append(template.format(value=value))
        for extra in ("requirement", "closing"):
            if sentence := self.variety.sentences.get(extra):
                parts.append(sentence)
        return " ".join(parts)

    def sample(self, n: int, id_prefix: str | None = None) -> list[SampledPrompt]:
        """`n` prompts with ids `<prefix>-000000`...; the first k of sample(n) equal sample(k) for the same seed."""
        prefix = id_prefix or f"prompt-{self.variety.name}"
        out = []
        for i in range(n):
            features = self.sample_features()
            out.append(SampledPrompt(self.variety.name, features, self.render(features), id=f"{prefix}-{i:06d}"))
        return out
