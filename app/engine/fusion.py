"""Hybrid retrieval: dense (embedding) and keyword (BM25) rankings merged by reciprocal
rank fusion.

Dense search finds paraphrases; BM25 finds the exact names users type (``pg_isready``,
``work_mem``, ``SKIP LOCKED``) that a small embedding model blurs. RRF needs no score
calibration between the two: each list votes ``1 / (rrf_k + rank)`` for its items.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)

RRF_K = 60  # the constant of Cormack et al. (2009); larger = flatter votes


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], *, rrf_k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[K, float]]:
    """Merge ranked lists of keys into one, best first, with each key's fused score.

    A key's score is the sum over the lists that hold it of ``weight / (rrf_k + rank)``
    (rank 1-based). Ties keep the order in which keys were first seen, so the first list
    wins them.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])  # sorted() is stable: ties keep first-seen order


def fuse_hits(dense: Sequence, keyword: Sequence, *, limit: int, rrf_k: int = RRF_K) -> list:
    """Fuse two lists of ``vectorstore.Hit`` (best first) into at most ``limit`` hits.

    The returned hits keep their own ``score`` (the cosine similarity for dense hits) and
    carry the fused score in ``metadata["fused_score"]``; keyword-only hits keep the score
    the keyword search gave them until the caller fills in their cosine (see
    ``with_cosine``).
    """
    by_id = {hit.chunk_id: hit for hit in keyword}
    by_id.update({hit.chunk_id: hit for hit in dense})  # a dense hit's score is a cosine: prefer it
    fused = reciprocal_rank_fusion(
        [[h.chunk_id for h in dense], [h.chunk_id for h in keyword]], rrf_k=rrf_k
    )
    return [
        dataclasses.replace(by_id[cid], metadata={**by_id[cid].metadata, "fused_score": score})
        for cid, score in fused[:limit]
    ]


def with_cosine(hits: Sequence, dense_ids: set[int], store, query_vector) -> list:
    """Give keyword-only hits their cosine similarity to the query, so that thresholds and
    displayed scores mean the same thing for every hit (the store's vectors are normalised)."""
    missing = [h.chunk_id for h in hits if h.chunk_id not in dense_ids]
    if not missing:
        return list(hits)
    import numpy as np

    vectors = np.asarray(store.vectors(missing), dtype="float32")
    cosines = dict(zip(missing, (vectors @ np.asarray(query_vector, dtype="float32")).tolist()))
    return [
        dataclasses.replace(h, score=float(cosines[h.chunk_id])) if h.chunk_id in cosines else h
        for h in hits
    ]


def add_keyword_hits(dense: Sequence, query: str, query_vector, *, store, fetch_k: int, sources=None) -> list:
    """The engine's hybrid step: ``dense`` candidates (best first) fused with the store's
    BM25 top ``fetch_k`` for ``query``; every returned hit scored by its cosine."""
    return fuse_keyword_hits(dense, store.keyword_search(query, fetch_k, sources=sources), query_vector, store=store)


def fuse_keyword_hits(dense: Sequence, keyword: Sequence, query_vector, *, store) -> list:
    """``dense`` and ``keyword`` hits (each best first) fused; every returned hit scored by its cosine."""
    fused = fuse_hits(dense, keyword, limit=len(dense) + len(keyword))
    return with_cosine(fused, {h.chunk_id for h in dense}, store, query_vector)
