"""Reciprocal rank fusion on hand-made rankings, and the hybrid search built on it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from app.engine.fusion import RRF_K, fuse_hits, hybrid_search, reciprocal_rank_fusion


def test_rrf_scores_are_sums_of_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], rrf_k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)


def test_rrf_item_in_both_lists_beats_one_list_leaders():
    # "x" is second in both lists; each list's leader is absent from the other.
    fused = reciprocal_rank_fusion([["d1", "x", "d3"], ["k1", "x", "k3"]])
    assert [key for key, _ in fused][:3] == ["x", "d1", "k1"]  # ties keep first-seen order


def test_rrf_weights_and_empty_lists():
    fused = reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0, 2.0])
    assert [key for key, _ in fused] == ["b", "a"]
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([["a"], []])[0] == ("a", pytest.approx(1 / (RRF_K + 1)))
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1, 2])


@dataclass
class Hit:  # the fields of vectorstore.Hit the fusion reads
    chunk_id: int
    text: str
    score: float
    metadata: dict = field(default_factory=dict)


class TinyStore:
    """Three chunks in a 2-d space, with a keyword search that finds chunk 3 only."""

    vecs = {1: [1.0, 0.0], 2: [0.8, 0.6], 3: [0.0, 1.0]}

    def search(self, query_vector, k, *, sources=None, fetch_k=None):
        scored = sorted(((float(np.dot(v, query_vector)), cid) for cid, v in self.vecs.items()), reverse=True)
        return [Hit(cid, f"chunk {cid}", s, {"source": f"{cid}.md"}) for s, cid in scored[:k] if cid != 3]

    def keyword_search(self, query, k, *, sources=None):
        return [Hit(3, "chunk 3", 7.5, {"source": "3.md"}), Hit(2, "chunk 2", 3.1, {"source": "2.md"})][:k]

    def vectors(self, chunk_ids):
        return np.array([self.vecs[c] for c in chunk_ids], dtype="float32")


def test_fuse_hits_keeps_dense_cosines_and_records_the_fused_score():
    dense = [Hit(1, "one", 0.9), Hit(2, "two", 0.7)]
    keyword = [Hit(2, "two", 12.0), Hit(3, "three", 8.0)]
    fused = fuse_hits(dense, keyword, limit=2)
    assert [h.chunk_id for h in fused] == [2, 1]
    assert fused[0].score == 0.7  # the cosine, not the BM25 score
    assert fused[0].metadata["fused_score"] == pytest.approx(1 / 62 + 1 / 61)
    assert dense[1].metadata == {}  # inputs untouched


def test_hybrid_search_gives_keyword_only_hits_their_cosine():
    hits = hybrid_search(TinyStore(), "word", np.array([1.0, 0.0]), k=3, fetch_k=3)
    assert [h.chunk_id for h in hits] == [2, 1, 3]
    assert [h.score for h in hits] == pytest.approx([0.8, 1.0, 0.0])
