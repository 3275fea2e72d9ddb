"""Reciprocal rank fusion on hand-made rankings, and the hybrid search built on it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from app.engine.fusion import RRF_K, add_keyword_hits, fuse_hits, reciprocal_rank_fusion


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

    def has_term(self, word, *, sources=None):
        return True

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


def test_keyword_only_hits_get_their_cosine():
    store, vector = TinyStore(), np.array([1.0, 0.0])
    hits = add_keyword_hits(store.search(vector, 3), "word", vector, store=store, fetch_k=3)[:3]
    assert [h.chunk_id for h in hits] == [2, 1, 3]
    assert [h.score for h in hits] == pytest.approx([0.8, 1.0, 0.0])


def test_unknown_terms_are_the_words_no_chunk_contains():
    from app.engine.relevance import unknown_terms

    class WordStore:
        text = "how to set up failover with etcd for the cluster"

        def has_term(self, word, *, sources=None):
            return word in self.text.split()

    # "do", "i", "up" are too short to judge and "2024" is a number: neither counts
    assert unknown_terms(WordStore(), "How do I set up Patroni with MongoDB for failover in 2024?") == (
        "patroni",
        "mongodb",
    )


class FakeEmbeddings:  # the query vector the tiny store is searched with
    def embed_query(self, text):
        return [1.0, 0.0]


def query(**changes):
    from app.engine.retrieval import RetrievalQuery

    return RetrievalQuery(**{"text": "word", "k": 3, "fetch_k": 3, "score_threshold": -1.0, **changes})


def test_the_engine_retrieval_adds_keyword_hits_when_hybrid():
    from app.engine.retrieval import retrieve

    dense_only = retrieve(query(hybrid=False), store=TinyStore(), embedder=FakeEmbeddings()).hits
    hybrid = retrieve(query(hybrid=True), store=TinyStore(), embedder=FakeEmbeddings()).hits
    assert [h.chunk_id for h in dense_only] == [1, 2]
    assert [h.chunk_id for h in hybrid] == [2, 1, 3]  # chunk 3 only BM25 found


def test_a_query_word_no_chunk_has_raises_the_threshold():
    from app.engine.relevance import judge

    class Store(TinyStore):
        def has_term(self, word, *, sources=None):
            return word != "patroni"

    def needed(**changes):
        return judge(query(**changes), [Hit(1, "unrelated text", 0.5)], Store()).needed

    assert needed(text="failover with Patroni", score_threshold=0.45, unknown_term_margin=0.1) == 0.55
    assert needed(text="set up failover", score_threshold=0.45, unknown_term_margin=0.1) == 0.45
    assert needed(text="failover with Patroni", score_threshold=0.45) == 0.45  # margin 0: off


def test_a_version_or_file_the_documents_never_mention_raises_the_bar():
    from app.engine.relevance import UNKNOWN_SUBJECT_MARGIN, judge, name_like, versions

    known = {"postgresql 15", "postgresql", "pg_hba.conf", "pg_hba"}

    class Store(TinyStore):
        def has_term(self, term, *, sources=None):
            return term in known

    def needed(text):
        return judge(query(text=text, score_threshold=0.45, unknown_term_margin=0.1),
                     [Hit(1, "unrelated text", 0.5)], Store()).needed

    assert versions("What is new in PostgreSQL 17 and Git 2.45?") == ["postgresql 17", "git 2.45"]
    assert name_like("Where does .gitlab-ci.yml go, next to pg_hba.conf?")[:2] == [".gitlab-ci.yml", "pg_hba.conf"]
    assert needed("What is new in PostgreSQL 17?") == round(0.45 + UNKNOWN_SUBJECT_MARGIN, 4)
    assert needed("Does PostgreSQL 15 read pg_hba.conf at start?") <= 0.45  # both are in the documents
    assert needed("How do I write a .gitlab-ci.yml file?") == 0.55  # an unknown file name: a name


def test_a_chunk_holding_the_question_words_lowers_the_bar():
    from app.engine.relevance import judge

    chunks = [Hit(1, "Rebuild the index after changing the embedding model with --full.", 0.38)]
    relieved = query(text="How do I rebuild the index after changing the embedding model?", score_threshold=0.45,
                     keyword_relief=0.1, min_keyword_coverage=0.6)
    assert judge(relieved, chunks, TinyStore()).answerable  # 0.38 >= 0.45 - 0.1, all words present
    other = query(text="How do I export conversations to Notion?", score_threshold=0.45,
                  keyword_relief=0.1, min_keyword_coverage=0.6)
    assert not judge(other, chunks, TinyStore()).answerable


def test_the_best_chunk_decides_abstention_and_the_floor_keeps_weaker_ones():
    from app.engine.retrieval import retrieve

    def hits(**changes):
        found = retrieve(query(hybrid=True, **changes), store=TinyStore(), embedder=FakeEmbeddings()).hits
        return [h.chunk_id for h in found]

    # cosines: chunk 1 = 1.0, chunk 2 = 0.8, chunk 3 (BM25 only) = 0.0
    assert hits(score_threshold=0.9, min_chunk_score=0.5) == [2, 1]  # 0.8 stays: above the floor
    assert hits(score_threshold=0.9, min_chunk_score=-1.0) == [2, 1, 3]
    assert hits(score_threshold=1.01) == []  # nothing reaches the threshold: abstain
    assert hits(score_threshold=0.75, min_chunk_score=0.9) == [2, 1]  # the floor is min(0.9, 0.75)


def test_only_name_like_words_count_as_unknown():
    from app.engine.relevance import name_like

    assert name_like("Where are my conversations stored?") == []  # plain words say nothing
    assert name_like("Which MongoDB stage joins collections in MySQL 8.0?") == ["mongodb", "mysql"]
    assert name_like("What is innodb_buffer_pool_size?") == ["innodb_buffer_pool_size"]
    assert name_like("What does the --freeze-deps option of python -m venv do?") == ["--freeze-deps"]
    # a capital that starts a sentence is grammar, not a name
    assert name_like("What queue is fast? Popping from a list is slow. Why?") == []


def test_a_subject_the_documents_never_name_raises_the_bar_like_a_version():
    from app.engine.relevance import UNKNOWN_SUBJECT_MARGIN, judge, subjects

    # every word is in the documents; "git replay" and the quoted button text are not
    words = {"git", "replay", "rebase", "use", "squash", "and", "merge", "button", "the"}
    phrases = {"git rebase", "squash and merge commits"}

    class Store(TinyStore):
        def has_term(self, term, *, sources=None):
            return term in words or any(term in p for p in phrases)

    def needed(text):
        return judge(query(text=text, score_threshold=0.45, unknown_term_margin=0.1),
                     [Hit(1, "unrelated text", 0.5)], Store()).needed

    assert subjects("How do I use git replay to rebase a branch?") == ["git replay"]
    assert subjects('Where is the "Squash and merge" button?') == ["squash and merge"]
    assert subjects("Can I run VACUUM while users are connected?") == ["vacuum"]  # ends at a function word
    assert subjects("Which function do I use to round a number?") == []  # nothing named
    assert needed("How do I use git replay to rebase a branch?") == round(0.45 + UNKNOWN_SUBJECT_MARGIN, 4)
    assert needed('Where is the "Squash and merge button"?') == round(0.45 + UNKNOWN_SUBJECT_MARGIN, 4)
    assert needed("How do I use git rebase to squash?") <= 0.45  # the phrase is in the documents
