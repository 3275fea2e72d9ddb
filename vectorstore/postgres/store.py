"""Reading the index from PostgreSQL: pgvector HNSW for dense search, full-text search
(tsvector + GIN, ranked by BM25: ``keywords``) for keywords, the catalog and a document's chunks.

Queries read the live rows, so a reader never goes stale: each file's sync commits as one
transaction, and a query sees every file either before or after it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from app.errors import StoreError
from vectorstore.postgres.connection import Pool, where
from vectorstore.postgres.keywords import bm25_search, has_phrase
from vectorstore.records import DocumentInfo, Hit
from vectorstore.schema import source_filter
from vectorstore.store import embedding_stamp, model_mismatch

if TYPE_CHECKING:
    from app.config import Settings


def read_stamp(conn) -> tuple[str | None, int | None, str | None]:
    """The embedding model, dimension and runtime-precision (e.g. ``onnx-fp32``) the index was
    built with (all None when empty; an index stamped before runtimes were is ``torch-fp32``,
    as locally)."""
    meta = dict(conn.execute("SELECT key, value FROM docchat_meta "
                             "WHERE key IN ('model', 'dim', 'embedding')").fetchall())
    if "model" not in meta:
        return None, None, None
    return meta["model"], int(meta["dim"]), embedding_stamp(meta)


_stamp_pools: dict[str, Pool] = {}  # per database, the few most recent (tests use many databases)
_stamp_lock = threading.Lock()
STAMP_POOLS = 4


def live_stamp(settings: "Settings") -> str:
    """The index's stamp as one token ("" before the first write), read through a connection
    kept for it per process: a replica compares it with its open store's on each request, so an
    ``ingest --full`` with another model (or runtime) from elsewhere is noticed without a restart."""
    dsn = settings.database_dsn
    with _stamp_lock:
        pool = _stamp_pools.pop(dsn, None)
        if pool is None:
            pool = Pool(settings, size=2)
        _stamp_pools[dsn] = pool  # most recent last
        while len(_stamp_pools) > STAMP_POOLS:
            _stamp_pools.pop(next(iter(_stamp_pools))).close()
    with pool.connection() as conn:
        model, dim, embedding = read_stamp(conn)
    return stamp_token(model, dim, embedding) if model else ""


def stamp_token(model: str, dim: int, embedding: str) -> str:
    return f"postgres:{model}:{dim}:{embedding}"


def as_array(value) -> np.ndarray:
    """A vector as pgvector returns it (a ``Vector`` in binary results, an array in text ones)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def has_index(settings: "Settings") -> bool:
    """Whether an embedding model was ever stamped (any vectors written)."""
    return live_stamp(settings) != ""


class PostgresStore:
    """The index in PostgreSQL, read through a small pool of connections."""

    path = None  # no generation folder: see vectorstore.backend.version_of

    def __init__(self, settings: "Settings", pool: Pool, model_name: str, dim: int, embedding: str):
        self.settings = settings
        self._pool = pool
        self.model_name = model_name
        self.dim = dim
        self.embedding = embedding  # runtime and precision, e.g. "onnx-fp32"
        self.stamp = stamp_token(model_name, dim, embedding)  # see vectorstore.backend.version_of

    @classmethod
    def open(cls, settings: "Settings", *, check_model: bool = True) -> "PostgresStore":
        """The index in the configured database; ``StoreError`` when there is none yet, or when
        it was built with another embedding model, runtime or precision (unless ``check_model``)."""
        pool = Pool(settings)
        with pool.connection() as conn:
            model, dim, embedding = read_stamp(conn)
        if model is None:
            pool.close()
            raise StoreError(f"No index yet in the database {where(settings.database_dsn)}.",
                             fix="Add documents to a folder and run `docchat ingest FOLDER` "
                             f"(or put them in {settings.docs_path} and run `docchat ingest`).")
        if check_model and (model, embedding) != (settings.embedding_model_name, settings.embedding_stamp):
            pool.close()
            raise model_mismatch(model, dim, settings.embedding_model_name, embedding, settings.embedding_stamp)
        return cls(settings, pool, model, dim, embedding)

    def __len__(self) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute("SELECT count(*) FROM docchat_chunks").fetchone()[0])

    def close(self) -> None:
        self._pool.close()

    # -- search -----------------------------------------------------------------------------
    def search(self, query_vector, k: int, *, sources: list[str] | None = None, fetch_k: int | None = None) -> list[Hit]:
        """The k chunks most similar (cosine) to the query vector, best first.

        HNSW with iterative scans: with a source filter, the index keeps scanning until
        enough matching rows are found, so a narrow filter still fills the top-k.
        """
        if k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise StoreError(
                f"A {query.shape[0]}-dimension query vector cannot search this {self.dim}-dimension index.",
                fix="Use the embedding model the index was built with, or `docchat ingest --full`.",
            )
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        n = max(k, fetch_k or 0)
        where_sql, params = source_filter(sources, mark="%s")
        # Relaxed order finds more of the true neighbours; the outer ORDER BY restores exact order.
        sql = ("WITH nearest AS MATERIALIZED (SELECT id, text, metadata, embedding <#> %s AS distance "
               f"FROM docchat_chunks WHERE {where_sql} ORDER BY distance LIMIT %s) "
               "SELECT id, text, metadata, -distance FROM nearest ORDER BY distance")
        with self._pool.connection() as conn, conn.transaction():
            if not sources:
                # Dense search is what the HNSW index is for; with the long candidate list of
                # ef_search 400 the planner prices it above reading a small table whole, and
                # sorted every row instead (33 ms p50 at 10k chunks, 4.8 through the index;
                # bench/RESULTS-postgres.md, Round 7).
                conn.execute("SET LOCAL enable_seqscan = off")
            if n > self.settings.hnsw_ef_search:  # the candidate list must hold the whole top-n
                conn.execute(f"SET LOCAL hnsw.ef_search = {min(int(n), 1000)}")
            rows = conn.execute(sql, [query, *params, n]).fetchall()
        return [Hit(int(i), text, float(score), metadata) for i, text, metadata, score in rows[:k]]

    def keyword_search(self, query: str, k: int, *, sources: list[str] | None = None) -> list[Hit]:
        """The k chunks that best match any of the query's words (BM25, as locally), best first."""
        with self._pool.connection() as conn:
            rows = bm25_search(conn, query, k, sources)
        return [Hit(int(i), text, float(score), metadata) for i, text, metadata, score in rows]

    def has_term(self, word: str, *, sources: list[str] | None = None) -> bool:
        """Whether any chunk (of ``sources``, if given) contains ``word``: a word, or several as a
        phrase (those words, in that order, side by side), as locally."""
        with self._pool.connection() as conn:
            return has_phrase(conn, word, sources)

    def warm(self) -> None:
        """Nothing to read ahead: the server's own caches hold what recent questions used."""

    def vectors(self, chunk_ids) -> np.ndarray:
        """The stored (normalised) vectors of these chunks, one row each, in the order asked."""
        ids = [int(i) for i in chunk_ids]
        if not ids:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._pool.connection() as conn:
            rows = dict(conn.execute("SELECT id, embedding FROM docchat_chunks WHERE id = ANY(%s)", [ids]).fetchall())
        missing = [i for i in ids if i not in rows]
        if missing:
            raise StoreError(f"Chunks {missing[:5]} are no longer in the index (a sync removed them meanwhile).",
                             fix="Ask again: the next search sees the current documents.")
        return np.stack([as_array(rows[i]) for i in ids])

    # -- catalog ----------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        """Every ingested file with its chunk count, by folder then path (byte order, as locally)."""
        sql = ("SELECT f.source, f.root, f.title, "
               "(SELECT count(*) FROM docchat_chunks c WHERE c.root = f.root AND c.source = f.source), "
               'f.size, f.ingested_at FROM docchat_files f ORDER BY f.root COLLATE "C", f.source COLLATE "C"')
        with self._pool.connection() as conn:
            return [DocumentInfo(s, r, t, int(n), int(size), at) for s, r, t, n, size, at in conn.execute(sql)]

    def chunks_of(self, source: str, root: str | None = None) -> list[Hit]:
        """A file's chunks in file order (score 0)."""
        sql = "SELECT id, text, metadata FROM docchat_chunks WHERE source = %s" + (" AND root = %s" if root else "")
        sql += ' ORDER BY root COLLATE "C", position'
        with self._pool.connection() as conn:
            rows = conn.execute(sql, [source, root] if root else [source]).fetchall()
        return [Hit(int(i), text, 0.0, metadata) for i, text, metadata in rows]
