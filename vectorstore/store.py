"""Reading the index: one finished, verified generation, opened read-only.

Readers take no lock: a generation never changes after the writer switches `CURRENT` to it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.errors import StoreError
from vectorstore import layout
from vectorstore.records import DocumentInfo, Hit
from vectorstore.schema import source_filter

if TYPE_CHECKING:
    from app.config import Settings

OPEN_ATTEMPTS = 5  # each retry means a writer published meanwhile: a few cover any real pace
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to rank by: BM25 gives them almost no weight, yet matching them makes
# SQLite score nearly every chunk. Dropped from keyword queries unless nothing else is left.
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in into is it its "
    "me my no not of on or so than that the their them then there these they this to was we "
    "what when where which who why will with would you your".split()
)


def connect_readonly(path: Path) -> sqlite3.Connection:
    # immutable=1: no locks, no journal look-ups; true because a generation is never modified.
    db = sqlite3.connect(path.as_uri() + "?immutable=1", uri=True, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def read_vectors(path: Path):
    import faiss

    return faiss.read_index(str(path))


def check_consistent(index, db: sqlite3.Connection, gen_dir: Path) -> None:
    """FAISS and SQLite must hold exactly the same chunk ids."""
    import faiss

    rows = db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    problem = None
    if index.ntotal != rows:
        problem = f"{index.ntotal} vectors but {rows} chunk rows"
    else:
        vector_ids = np.sort(faiss.vector_to_array(index.id_map))
        row_ids = np.fromiter((r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")), np.int64)
        if not np.array_equal(vector_ids, row_ids):
            problem = "vector ids and chunk ids differ"
    if problem:
        raise layout.damaged(gen_dir, f"is inconsistent ({problem})")


def model_mismatch(recorded: str, dim: int, wanted: str, recorded_stamp: str | None = None,
                   wanted_stamp: str | None = None) -> StoreError:
    """Vectors of another model, or of the same model run another way (``onnx-int8`` vs ``torch-fp32``)."""
    if recorded == wanted and recorded_stamp != wanted_stamp:
        return StoreError(
            f"The index was embedded by {recorded!r} as {recorded_stamp}, but the settings embed queries as "
            f"{wanted_stamp}: vectors of different runtimes or precisions are not compared.",
            fix="Re-embed your documents: `docchat ingest --full` (or set DOCCHAT_EMBEDDING_RUNTIME and "
            "DOCCHAT_EMBEDDING_PRECISION to match the index: torch-fp32 means RUNTIME=torch).",
        )
    return StoreError(
        f"The index was built with the embedding model {recorded!r} ({dim} dimensions), but the "
        f"settings name {wanted!r}: its vectors cannot be compared.",
        fix="Re-embed your documents with the new model: `docchat ingest --full` (or set "
        f"DOCCHAT_EMBEDDING_MODEL back to {recorded!r}).",
    )


def embedding_stamp(manifest: dict) -> str:
    """How the index's vectors were computed; an index older than the stamp was torch fp32."""
    return str(manifest.get("embedding", "torch-fp32"))


class Store:
    """A read-only view of the live index: dense search, keyword search and the catalog."""

    def __init__(self, gen_dir: Path, index, db: sqlite3.Connection, manifest: dict):
        self.path = gen_dir
        self._index = index
        self._db = db
        self.model_name: str = manifest["model"]
        self.dim: int = int(manifest["dim"])
        self.generation: int = int(manifest["generation"])
        self.embedding: str = embedding_stamp(manifest)  # e.g. "onnx-int8"
        self.manifest = manifest

    @classmethod
    def open(cls, settings: "Settings", *, check_model: bool = True) -> "Store":
        """Open the live generation after verifying its signature, checksums and consistency.

        Raises ``StoreError`` when there is no index yet, when a file was changed or not
        written by this install, when FAISS and SQLite disagree, or when the index was built
        with another embedding model than the settings name.
        """
        store = cls.open_live(settings)
        if store is None:
            raise StoreError(
                f"No index yet in {settings.index_path}.",
                fix="Add documents to a folder and run `docchat ingest FOLDER` "
                f"(or put them in {settings.docs_path} and run `docchat ingest`).",
            )
        if check_model and (store.model_name, store.embedding) != (settings.embedding_model_name,
                                                                   settings.embedding_stamp):
            store.close()
            raise model_mismatch(store.model_name, store.dim, settings.embedding_model_name, store.embedding,
                                 settings.embedding_stamp)
        return store

    @classmethod
    def open_live(cls, settings: "Settings") -> "Store | None":
        """The live generation, verified, or None when no index has been written yet.

        Once open, a generation stays readable (FAISS is in memory, SQLite holds its file open)
        even after a writer removes its folder. Opening can still meet a writer that switched
        and removed the folder half-way through, so a failure is trusted only when ``CURRENT``
        still names the same generation afterwards; otherwise the whole open starts again.
        """
        index_dir = settings.index_path
        for _attempt in range(OPEN_ATTEMPTS):
            gen_dir = layout.current_generation(index_dir)
            if gen_dir is None:
                return None
            try:
                return cls._open_generation(gen_dir, layout.index_key(settings.data_path))
            except StoreError:
                if layout.current_generation(index_dir) == gen_dir:
                    raise  # nobody moved it: real damage
        raise StoreError(f"The index in {index_dir} changed {OPEN_ATTEMPTS} times while it was being opened.",
                         fix="Try again when the running `docchat ingest` has finished.")

    @classmethod
    def _open_generation(cls, gen_dir: Path, key: bytes) -> "Store":
        if not gen_dir.is_dir():
            raise layout.damaged(gen_dir, "(the live generation named by CURRENT) is missing")
        manifest = layout.verify_live(gen_dir, key)
        try:
            index = read_vectors(gen_dir / layout.VECTORS)
            db = connect_readonly(gen_dir / layout.DATABASE)
            check_consistent(index, db, gen_dir)
        except (RuntimeError, sqlite3.DatabaseError) as exc:
            raise layout.damaged(gen_dir, f"cannot be read ({exc})") from None
        return cls(gen_dir, index, db, manifest)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def close(self) -> None:
        self._db.close()

    # -- search -----------------------------------------------------------------------------
    def search(self, query_vector, k: int, *, sources: list[str] | None = None, fetch_k: int | None = None) -> list[Hit]:
        """The k chunks most similar (cosine) to the query vector, best first.

        ``sources`` restricts to those source paths, or folders when an entry ends with '/'.
        The restriction is exact (applied inside FAISS), so ``fetch_k`` only widens how many
        candidates FAISS ranks; at most k hits are returned.
        """
        import faiss

        if len(self) == 0 or k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise StoreError(
                f"A {query.shape[1]}-dimension query vector cannot search this {self.dim}-dimension index.",
                fix="Use the embedding model the index was built with, or `docchat ingest --full`.",
            )
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        params = None
        if sources:
            ids = self._ids_of_sources(sources)
            if ids.size == 0:
                return []
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
        n = min(max(k, fetch_k or 0), len(self))
        scores, ids = self._index.search(query, n, params=params)
        found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0][:k]
        return self._hits(found)

    def keyword_search(self, query: str, k: int, *, sources: list[str] | None = None) -> list[Hit]:
        """The k chunks that best match the query's words (SQLite FTS5 BM25), best first."""
        words = _WORD.findall(query.lower())
        words = [w for w in words if w not in _STOPWORDS] or words
        if not words or k <= 0:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
        where, params = source_filter(sources, "c.source")
        rows = self._db.execute(
            "SELECT c.id, bm25(chunks_fts) AS rank FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH ? AND {where} ORDER BY rank LIMIT ?",
            [match, *params, k],
        ).fetchall()
        return self._hits([(row["id"], -float(row["rank"])) for row in rows])

    def has_term(self, word: str, *, sources: list[str] | None = None) -> bool:
        """Whether any chunk (of ``sources``, if given) contains ``word``; no ranking, so cheap."""
        words = _WORD.findall(word.lower())
        if not words:
            return False
        where, params = source_filter(sources, "c.source")
        row = self._db.execute(
            "SELECT 1 FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            f"WHERE chunks_fts MATCH ? AND {where} LIMIT 1",
            [" ".join(f'"{w}"' for w in words), *params],
        ).fetchone()
        return row is not None

    def vectors(self, chunk_ids) -> np.ndarray:
        """The stored (normalised) vectors of these chunks, one row each, for MMR."""
        ids = np.asarray(list(chunk_ids), dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(ids)

    # -- catalog ----------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        """Every ingested file with its chunk count, by folder then path."""
        rows = self._db.execute(
            "SELECT f.source, f.root, f.title, f.size, f.ingested_at, "
            "(SELECT COUNT(*) FROM chunks c WHERE c.root = f.root AND c.source = f.source) AS n "
            "FROM files f ORDER BY f.root, f.source"
        )
        return [
            DocumentInfo(r["source"], r["root"], r["title"], r["n"], r["size"], r["ingested_at"]) for r in rows
        ]

    def chunks_of(self, source: str, root: str | None = None) -> list[Hit]:
        """A file's chunks in file order (score 0)."""
        sql = "SELECT id FROM chunks WHERE source = ?" + (" AND root = ?" if root else "")
        sql += " ORDER BY root, position"
        rows = self._db.execute(sql, [source, root] if root else [source])
        return self._hits([(row["id"], 0.0) for row in rows])

    def _ids_of_sources(self, sources: list[str]) -> np.ndarray:
        where, params = source_filter(sources)
        rows = self._db.execute(f"SELECT id FROM chunks WHERE {where}", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        marks = ",".join("?" * len(ids))
        rows = {r["id"]: r for r in self._db.execute(f"SELECT id, text, metadata FROM chunks WHERE id IN ({marks})", ids)}
        return [
            Hit(chunk_id, rows[chunk_id]["text"], score, json.loads(rows[chunk_id]["metadata"]))
            for chunk_id, score in scored
            if chunk_id in rows
        ]
