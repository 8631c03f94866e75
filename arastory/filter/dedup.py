"""Exact and near-duplicate removal and the leakage guard, over cached embeddings with faiss (flat or IVF by size)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from arastory.errors import ConfigError

if TYPE_CHECKING:
    import faiss


@dataclass
class DedupSettings:
    """Near-duplicate search settings (ours): inner product of normalized Arabic-side embeddings."""

    exact: bool = True
    near: bool = True
    similarity: float = 0.95  # a pair this similar to an earlier kept pair is a near-duplicate
    index: str = "auto"  # auto | flat | ivf
    ivf_min_items: int = 50_000  # `auto` switches from a flat index to IVF at this many candidates
    nprobe: int = 16
    chunk_size: int = 1024  # within-chunk comparison costs chunk_size x dim per item

    def __post_init__(self):
        if self.index not in ("auto", "flat", "ivf"):
            raise ConfigError("filter.dedup.index", f"'{self.index}' is not one of: auto, flat, ivf")
        if not 0 < self.similarity <= 1:
            raise ConfigError("filter.dedup.similarity", f"must be in (0, 1], got {self.similarity}")


def exact_duplicates(candidates: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Indices (among `candidates`, in order) whose English or Arabic story hash was already seen."""
    seen: set[tuple[str, int]] = set()
    dups = []
    for idx in candidates:
        en, ar = int(hashes[idx, 0]), int(hashes[idx, 1])
        if (en and ("en", en) in seen) or (ar and ("ar", ar) in seen):
            dups.append(idx)
            continue
        seen.update({("en", en), ("ar", ar)})
    return np.array(dups, dtype=np.int64)


def make_index(
    dim: int, n_items: int, settings: DedupSettings, sample: np.ndarray | None = None
) -> tuple[faiss.Index, str]:
    """A flat inner-product index for small sets, IVF (scalar-quantized, bounded memory) above `ivf_min_items`."""
    import faiss

    kind = settings.index if settings.index != "auto" else ("ivf" if n_items >= settings.ivf_min_items else "flat")
    if kind == "flat":
        return faiss.IndexFlatIP(dim), "flat"
    nlist = max(1, min(int(4 * math.sqrt(n_items)), len(sample) // 39 if sample is not None else 1))
    index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    faiss.extract_index_ivf(index).nprobe = settings.nprobe
    return index, f"ivf{nlist}"


def near_duplicates(candidates: np.ndarray, embeddings: np.ndarray, settings: DedupSettings) -> tuple[np.ndarray, str]:
    """Greedy near-duplicate removal in input order: an item is dropped when its best match among the items
    kept before it reaches `settings.similarity`. Works chunk by chunk over a memory-mapped embedding array."""
    if len(candidates) == 0:
        return np.array([], dtype=np.int64), "none"
    sample = None
    if settings.index == "ivf" or (settings.index == "auto" and len(candidates) >= settings.ivf_min_items):
        rng = np.random.default_rng(0)
        pick = np.sort(rng.choice(candidates, size=min(len(candidates), 100_000), replace=False))
        sample = np.asarray(embeddings[pick], dtype=np.float32)
    index, kind = make_index(embeddings.shape[1], len(candidates), settings, sample)
    dups = []
    for start in range(0, len(candidates), settings.chunk_size):
        ids = candidates[start : start + settings.chunk_size]
        vectors = np.ascontiguousarray(embeddings[ids], dtype=np.float32)
        drop = np.zeros(len(ids), dtype=bool)
        if index.ntotal:
            best, _ = index.search(vectors, 1)
            drop |= best[:, 0] >= settings.similarity
        close = np.triu(vectors @ vectors.T >= settings.similarity, k=1)
        for i in np.flatnonzero(close.any(axis=1)):  # earlier items of the chunk win over later ones
            if not drop[i]:
                drop[close[i]] = True
        index.add(vectors[~drop])
        dups.extend(ids[drop].tolist())
    return np.array(sorted(dups), dtype=np.int64), kind


@dataclass
class LeakageSettings:
    """Drop training pairs whose prompt or story near-duplicates an evaluation item (ours: 0.9 similarity)."""

    enabled: bool = True
    eval_files: tuple[str, ...] = ()
    similarity: float = 0.9
    chunk_size: int = 4096


def leaked(
    candidates: np.ndarray,
    pair_embeddings: np.ndarray,
    prompt_embeddings: np.ndarray | None,
    pair_hashes: np.ndarray,
    eval_embeddings: np.ndarray,
    eval_prompt_embeddings: np.ndarray,
    eval_hashes: set[int],
    settings: LeakageSettings,
) -> np.ndarray:
    """Candidates that match an eval item: same normalized prompt or story, or similarity >= settings.similarity."""
    import faiss

    if len(candidates) == 0 or len(eval_embeddings) == 0:
        return np.array([], dtype=np.int64)
    full = faiss.IndexFlatIP(eval_embeddings.shape[1])
    full.add(np.ascontiguousarray(eval_embeddings, dtype=np.float32))
    prompts = faiss.IndexFlatIP(eval_prompt_embeddings.shape[1])
    prompts.add(np.ascontiguousarray(eval_prompt_embeddings, dtype=np.float32))
    out = []
    for start in range(0, len(candidates), settings.chunk_size):
        ids = candidates[start : start + settings.chunk_size]
        hit = np.array([int(pair_hashes[i, 1]) in eval_hashes or int(pair_hashes[i, 2]) in eval_hashes for i in ids])
        hit |= (
            full.search(np.ascontiguousarray(pair_embeddings[ids], dtype=np.float32), 1)[0][:, 0] >= settings.similarity
        )
        if prompt_embeddings is not None:
            hit |= (
                prompts.search(np.ascontiguousarray(prompt_embeddings[ids], dtype=np.float32), 1)[0][:, 0]
                >= settings.similarity
            )
        out.extend(ids[hit].tolist())
    return np.array(out, dtype=np.int64)
