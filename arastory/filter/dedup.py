"""Exact and near-duplicate removal and the leakage guard over cached embeddings with faiss (flat, or IVF-HNSW)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from arastory.errors import ConfigError


@dataclass
class DedupSettings:
    """Near-duplicate search settings (ours): inner product of normalized Arabic-side embeddings."""

    exact: bool = True
    near: bool = True
    similarity: float = 0.95  # a pair this similar to an earlier kept pair is a near-duplicate
    index: str = "auto"  # auto | flat | ivf
    ivf_min_items: int = 50_000  # `auto` switches from a flat index to IVF at this many candidates
    list_size: int = 100  # IVF: items per list (nlist = candidates / list_size), so a search costs the same at any n
    nprobe: int = 16
    rerank: int = 4  # IVF: the best this-many matches of the 8-bit index are re-scored exactly (float vectors)
    recall_sample: int = 500  # IVF: kept items checked against an exact search of the earlier kept ones (0: off)
    chunk_size: int = 1024  # within-chunk comparison costs chunk_size x dim per item

    def __post_init__(self):
        if self.index not in ("auto", "flat", "ivf"):
            raise ConfigError("filter.dedup.index", f"'{self.index}' is not one of: auto, flat, ivf")
        if not 0 < self.similarity <= 1:
            raise ConfigError("filter.dedup.similarity", f"must be in (0, 1], got {self.similarity}")
        for key in ("list_size", "nprobe", "rerank", "chunk_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"filter.dedup.{key}", f"must be a positive integer, got {getattr(self, key)}")


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


def _rows(embeddings: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(embeddings[ids], dtype=np.float32)


class FlatKept:
    """The kept vectors in an exact inner-product index: every search scans all of them (small sets only)."""

    def __init__(self, dim: int):
        import faiss

        self.index, self.kind = faiss.IndexFlatIP(dim), "flat"

    def best(self, vectors: np.ndarray) -> np.ndarray:
        if not self.index.ntotal:
            return np.full(len(vectors), -np.inf, dtype=np.float32)
        return self.index.search(vectors, 1)[0][:, 0]

    def add(self, vectors: np.ndarray, ids: np.ndarray, keep: np.ndarray) -> None:
        self.index.add(vectors[keep])


class IvfKept:
    """The kept vectors in an IVF index whose lists hold ~`list_size` items each (nlist grows with n) under an HNSW
    coarse quantizer (log(nlist) per search), lists in 8-bit scalar quantization, the best `rerank` matches re-scored
    exactly from the float vectors: a search costs the same at 100k and 1M items, so the whole pass is linear.
    Centroids are a seeded sample of the candidates (k-means over nlist ~ n centroids would cost n^2)."""

    def __init__(self, embeddings: np.ndarray, candidates: np.ndarray, settings: DedupSettings):
        import faiss

        rng = np.random.default_rng(0)
        dim, self.nlist = embeddings.shape[1], max(1, math.ceil(len(candidates) / settings.list_size))
        self.quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        self.quantizer.add(_rows(embeddings, np.sort(rng.choice(candidates, self.nlist, replace=False))))
        self.index = faiss.IndexIVFScalarQuantizer(
            self.quantizer, dim, self.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        self.index.by_residual = False
        sample = np.sort(rng.choice(candidates, min(len(candidates), 20_000), replace=False))
        self.index.train(_rows(embeddings, sample))  # the 8-bit ranges only: the quantizer holds its centroids
        self.nprobe, self.rerank = min(settings.nprobe, self.nlist), settings.rerank
        self.embeddings, self.kind = embeddings, f"ivf{self.nlist}_hnsw32_sq8"

    def best(self, vectors: np.ndarray) -> np.ndarray:
        from faiss.contrib.ivf_tools import search_preassigned

        self.index.nprobe = self.nprobe
        self.lists = self.quantizer.search(vectors, self.nprobe)[1]  # reused by add(): one coarse search per item
        if not self.index.ntotal:
            return np.full(len(vectors), -np.inf, dtype=np.float32)
        _, ids = search_preassigned(self.index, vectors, self.rerank, self.lists)
        found = _rows(self.embeddings, np.maximum(ids, 0).ravel()).reshape(*ids.shape, -1)
        exact = np.einsum("qd,qkd->qk", vectors, found)
        exact[ids < 0] = -np.inf
        return exact.max(axis=1)

    def add(self, vectors: np.ndarray, ids: np.ndarray, keep: np.ndarray) -> None:
        """The chunk's `keep` rows, into the lists their last `best()` search assigned them to."""
        from faiss.contrib.ivf_tools import add_preassigned

        lists, ids = np.ascontiguousarray(self.lists[keep, 0]), np.ascontiguousarray(ids[keep], dtype=np.int64)
        add_preassigned(self.index, np.ascontiguousarray(vectors[keep]), lists, ids)


def make_index(embeddings: np.ndarray, candidates: np.ndarray, settings: DedupSettings) -> FlatKept | IvfKept:
    """A flat index for small sets, IVF above `ivf_min_items` candidates (or as `settings.index` says)."""
    kind = settings.index
    if kind == "auto":
        kind = "ivf" if len(candidates) >= settings.ivf_min_items else "flat"
    return FlatKept(embeddings.shape[1]) if kind == "flat" else IvfKept(embeddings, candidates, settings)


def near_duplicates(candidates: np.ndarray, embeddings: np.ndarray, settings: DedupSettings) -> tuple[np.ndarray, str]:
    """Greedy near-duplicate removal in input order: an item is dropped when its best match among the items
    kept before it reaches `settings.similarity`. Works chunk by chunk over a memory-mapped embedding array."""
    if len(candidates) == 0:
        return np.array([], dtype=np.int64), "none"
    index = make_index(embeddings, candidates, settings)
    dups = []
    for start in range(0, len(candidates), settings.chunk_size):
        ids = candidates[start : start + settings.chunk_size]
        vectors = _rows(embeddings, ids)
        drop = index.best(vectors) >= settings.similarity
        close = np.triu(vectors @ vectors.T >= settings.similarity, k=1)
        for i in np.flatnonzero(close.any(axis=1)):  # earlier items of the chunk win over later ones
            if not drop[i]:
                drop[close[i]] = True
        index.add(vectors, ids, ~drop)
        dups.extend(ids[drop].tolist())
    return np.array(sorted(dups), dtype=np.int64), index.kind


def sampled_recall(
    candidates: np.ndarray, embeddings: np.ndarray, dups: np.ndarray, settings: DedupSettings
) -> dict | None:
    """The approximate index's recall against an exact flat search, on a seeded sample of the kept items: a sampled
    item that an exact search finds at least `similarity` alike to an EARLIER KEPT item is a near-duplicate the
    index missed. recall = found / (found + missed in the sample scaled to all kept items)."""
    if settings.recall_sample <= 0:
        return None
    kept_pos = np.flatnonzero(~np.isin(candidates, dups))  # positions in input order
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(kept_pos, min(settings.recall_sample, len(kept_pos)), replace=False))
    queries, best = _rows(embeddings, candidates[sample]), np.full(len(sample), -np.inf, dtype=np.float32)
    for start in range(0, len(kept_pos), 16_384):  # blocks of earlier kept items: bounded memory
        block = kept_pos[start : start + 16_384]
        if not len(sample) or block[0] >= sample[-1]:
            break
        sims = queries @ _rows(embeddings, candidates[block]).T
        sims[block[None, :] >= sample[:, None]] = -np.inf
        best = np.maximum(best, sims.max(axis=1))
    missed = int((best >= settings.similarity).sum())
    estimated = missed / max(1, len(sample)) * len(kept_pos)
    found = len(dups)
    return {
        "sampled_kept": len(sample),
        "missed_in_sample": missed,
        "found": found,
        "estimated_missed": round(estimated),
        "recall": round(found / (found + estimated), 4) if found + estimated else 1.0,
    }


def near_duplicates_measured(
    candidates: np.ndarray, embeddings: np.ndarray, settings: DedupSettings
) -> tuple[np.ndarray, dict]:
    """`near_duplicates` and what the reports say about it: the index used and, for IVF, its sampled recall."""
    dups, kind = near_duplicates(candidates, embeddings, settings)
    recall = sampled_recall(candidates, embeddings, dups, settings) if kind.startswith("ivf") else None
    return dups, {"index": kind, "recall": recall}


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
