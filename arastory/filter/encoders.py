"""Pair scorers for the filter: a sentence-transformers encoder (cosine of embeddings) or the offline lexicon scorer.

Every encoder gives, for a chunk of pairs, a 0-1 similarity per pair and a normalized Arabic-side embedding per pair
(used for near-duplicate search and the leakage guard). `id` names the encoder and its settings in cache keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from arastory.errors import ConfigError
from arastory.io import fingerprint
from arastory.records import ParallelRecord

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class PairEncoder(Protocol):
    """What the filter needs of an encoder (`SentenceEncoder`, `LexiconEncoder` or a user's `_target_` class)."""

    @property
    def id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def encode_pairs(self, pairs: list[ParallelRecord]) -> tuple[np.ndarray, np.ndarray]: ...


def pair_texts(pairs: list[ParallelRecord], separator: str = "\n") -> tuple[list[str], list[str]]:
    """(English prompt+story, Arabic prompt+story) per pair: what the similarity compares."""
    return (
        [f"{p.en_prompt}{separator}{p.en_story}" for p in pairs],
        [f"{p.ar_prompt}{separator}{p.ar_story}" for p in pairs],
    )


class SentenceEncoder:
    """Any sentence-transformers model (default LaBSE) by HF id or local path; batched, on the GPU when present."""

    def __init__(
        self,
        model: str = "sentence-transformers/LaBSE",
        batch_size: int = 64,
        device: str | None = None,
        max_seq_length: int | None = None,
        separator: str = "\n",
        trust_remote_code: bool = False,
    ):
        self.model_name, self.batch_size, self.device = str(model), batch_size, device
        self.max_seq_length, self.separator, self.trust_remote_code = max_seq_length, separator, trust_remote_code
        self._model: Any = None  # a SentenceTransformer, loaded on first use
        self.texts_encoded = 0

    @property
    def id(self) -> str:
        model = self.model_name
        if Path(model).exists():  # a local model: its files, not its path, identify it
            model = fingerprint(
                model,
                sorted(
                    (p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in Path(model).rglob("*") if p.is_file()
                ),
            )
        return "st-" + fingerprint("sentence-transformers", model, self.max_seq_length, self.separator)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                self._model = SentenceTransformer(
                    self.model_name, device=device, trust_remote_code=self.trust_remote_code
                )
            except (OSError, ValueError) as error:  # offline hub, unknown id, not a sentence-transformers model
                raise ConfigError(
                    "encoder.model",
                    f"'{self.model_name}' cannot be loaded ({_first_line(error)}); "
                    "download it once with network access (it is cached), or set encoder.model=<local "
                    "dir>, or use encoder=lexicon (offline)",
                ) from None
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
        return self._model

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:  # sentence-transformers returns None when no module declares its output size
            raise ConfigError("encoder.model", f"'{self.model_name}' does not say its embedding dimension")
        return int(dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts_encoded += len(texts)
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)

    def encode_pairs(self, pairs: list[ParallelRecord]) -> tuple[np.ndarray, np.ndarray]:
        english, arabic = pair_texts(pairs, self.separator)
        en, ar = self.embed(english), self.embed(arabic)
        return np.clip((en * ar).sum(axis=1), -1.0, 1.0).astype(np.float32), ar


class LexiconEncoder:
    """The offline scorer: bilingual-lexicon coverage for the similarity, hashed word vectors for dedup/leakage."""

    def __init__(
        self,
        lexicon: str = "bundled",
        dim: int = 512,
        length_band: tuple[float, float] = (0.6, 1.1),
        length_weight: float = 1.0,
        center: float = 0.57,
        scale: float = 0.05,
    ):
        from arastory.filter.lexicon import BUNDLED_LEXICON, Lexicon, LexiconScorer

        self.lexicon_path = BUNDLED_LEXICON if lexicon == "bundled" else Path(lexicon)
        self.scorer = LexiconScorer(Lexicon(self.lexicon_path), length_band, length_weight, center, scale)
        self._dim = int(dim)
        self.settings = {
            "dim": dim,
            "length_band": list(length_band),
            "length_weight": length_weight,
            "center": center,
            "scale": scale,
        }
        self.texts_encoded = 0

    @property
    def id(self) -> str:
        return "lex-" + fingerprint("lexicon", self.scorer.lexicon.fingerprint, self.settings)

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        from arastory.filter.lexicon import hashed_embeddings

        self.texts_encoded += len(texts)
        return hashed_embeddings(texts, self._dim)

    def encode_pairs(self, pairs: list[ParallelRecord]) -> tuple[np.ndarray, np.ndarray]:
        return self.scorer.score_pairs(pairs), self.embed(pair_texts(pairs)[1])


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:160]
