"""Retrieval: a query in, the best distinct chunks out (none when nothing reaches the threshold).

One straight line -- embed, search, threshold, de-duplicate, select (top-k or MMR) -- so
that other rankers (keyword fusion, a re-ranker) can be hooked in as one more step.
"""

from __future__ import annotations

import functools
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.engine.fusion import fuse_keyword_hits
from app.engine.relevance import Relevance, judge, keyword_coverage, unknown_names

# Chunks sharing this much of their wording are the same passage seen twice (a page
# copied into two files, overlapping chunks of one file): the model needs it once.
NEAR_DUPLICATE_JACCARD = 0.8
# Below the usual floor, a chunk must hold this share of the question's words to be kept.
RELIEF_COVERAGE = 0.5


@dataclass
class RetrievalQuery:
    """Everything that decides what one query retrieves."""

    text: str
    k: int
    fetch_k: int
    score_threshold: float
    search_type: str = "similarity"  # "similarity" | "mmr"
    mmr_lambda: float = 0.5
    sources: list[str] | None = None
    hybrid: bool = False  # fuse BM25 keyword hits with the dense ones (app.engine.fusion)
    unknown_term_margin: float = 0.0  # added to the threshold when the query names a word no chunk has
    keyword_relief: float = 0.0  # taken off the threshold when one chunk holds most of the question's words
    min_keyword_coverage: float = 1.01  # ... that share of them (above 1: never)
    min_chunk_score: float = -1.0  # chunks below this (or the threshold, if lower) are dropped

    @classmethod
    def from_settings(cls, text: str, settings, *, k=None, sources=None, score_threshold=None):
        k = k or settings.k
        return cls(
            text=text,
            k=k,
            fetch_k=max(settings.fetch_k, k),
            score_threshold=settings.score_threshold if score_threshold is None else score_threshold,
            search_type=settings.search_type,
            mmr_lambda=settings.mmr_lambda,
            sources=list(sources) if sources else None,
            hybrid=settings.hybrid,
            unknown_term_margin=settings.unknown_term_margin,
            keyword_relief=settings.keyword_relief,
            min_keyword_coverage=settings.min_keyword_coverage,
            min_chunk_score=settings.min_chunk_score,
        )


@dataclass
class Retrieval:
    hits: list  # vectorstore.Hit, best first; empty when the documents do not answer
    ms: float  # embedding + search + selection
    closest: list = field(default_factory=list)  # the best candidates, answerable or not
    relevance: Relevance | None = None  # why the documents were judged to answer, or not


def retrieve(query: RetrievalQuery, *, store, embedder) -> Retrieval:
    """The chunks to show the model for ``query``: at most k, none when the best is below the threshold.

    ``embedder`` is an EmbeddingBackend (app.backends.contract).
    """
    start = time.perf_counter()
    # The keyword side needs only the question's words: it runs on another core while the
    # question is embedded and searched (bench/RESULTS-scale.md, Round 6).
    words = _background().submit(_word_lookups, query, store)
    vector = embedder.embed_query(query.text)
    candidates = store.search(vector, query.fetch_k, sources=query.sources, fetch_k=query.fetch_k)
    keyword, unknown = words.result()
    if query.hybrid:
        candidates = fuse_keyword_hits(candidates, keyword, vector, store=store)
    # The relevance judgement decides whether the documents answer at all; once they do,
    # chunks down to the lower floor stay: cutting every chunk at the threshold would drop
    # keyword hits whose wording matches but whose cosine is modest (bench/RESULTS-retrieval.md).
    relevance = judge(query, candidates, store, unknown=unknown)
    floor = min(query.min_chunk_score, query.score_threshold)
    passing = [h for h in candidates if h.score >= floor or _earns_relief(query, h, relevance)] \
        if relevance.answerable else []
    distinct = drop_near_duplicates(passing)
    if query.search_type == "mmr":
        chosen = select_mmr(distinct, vector, store, query.k, query.mmr_lambda)
    else:
        chosen = distinct[: query.k]
    closest = sorted(drop_near_duplicates(candidates[: query.fetch_k]), key=lambda h: -h.score)[: query.k]
    return Retrieval(hits=chosen, ms=(time.perf_counter() - start) * 1000, closest=closest, relevance=relevance)


def _word_lookups(query: RetrievalQuery, store) -> tuple[list, tuple[str, ...]]:
    """What the store's keyword index says of the question's words: its BM25 top hits (for a
    hybrid search) and the names it holds nowhere."""
    keyword = store.keyword_search(query.text, query.fetch_k, sources=query.sources) if query.hybrid else []
    return keyword, unknown_names(query, store)


@functools.cache
def _background() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="docchat-words")


def _earns_relief(query: RetrievalQuery, hit, relevance: Relevance) -> bool:
    """A chunk below the usual floor is kept only if it holds the question's words itself."""
    return hit.score >= relevance.needed and keyword_coverage(query.text, [hit.text]) >= RELIEF_COVERAGE


def drop_near_duplicates(hits: list) -> list:
    """``hits`` without the later of any two chunks with (nearly) the same words."""
    kept, kept_words, kept_hashes = [], [], set()
    for hit in hits:
        content_hash = (hit.metadata or {}).get("content_hash")
        if content_hash and content_hash in kept_hashes:
            continue
        words = _words(hit.text)
        if any(_near_duplicate(words, other) for other in kept_words):
            continue
        kept.append(hit)
        kept_words.append(words)
        if content_hash:
            kept_hashes.add(content_hash)
    return kept


def select_mmr(hits: list, query_vector: np.ndarray, store, k: int, lambda_mult: float) -> list:
    """Maximal marginal relevance: relevant chunks that are not all saying the same thing."""
    from langchain_core.vectorstores.utils import maximal_marginal_relevance

    if len(hits) <= 1:
        return hits[:k]
    vectors = store.vectors([h.chunk_id for h in hits])
    order = maximal_marginal_relevance(query_vector, list(vectors), lambda_mult=lambda_mult, k=k)
    return [hits[i] for i in order]


@functools.lru_cache(maxsize=512)  # retrieve() de-duplicates the same candidates twice
def _words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


@functools.lru_cache(maxsize=4096)  # ... so each pair is judged once per query, not twice
def _near_duplicate(a: frozenset, b: frozenset) -> bool:
    # Jaccard >= t needs the smaller set to hold >= t of the larger's size: a cheap first test.
    if min(len(a), len(b)) < NEAR_DUPLICATE_JACCARD * max(len(a), len(b)):
        return False
    return _jaccard(a, b) >= NEAR_DUPLICATE_JACCARD


def _jaccard(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / len(a | b)
