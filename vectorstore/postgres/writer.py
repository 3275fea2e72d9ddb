"""Writing the index in PostgreSQL: each file's sync is one transaction.

The changes to one document (replace its chunks, delete it, rename it, note its new mtime)
run in one transaction that holds an advisory lock on that document, and commit when the
writer moves on to another document or ``commit`` is called. A ``kill -9`` therefore leaves
every file with its old chunks or its new ones, never a mix, and two ingests on two machines
wait for each other only on a document both touch. A full rebuild is the exception: one
transaction, holding the whole index exclusively, so readers see the old index until it
commits. The embedding model and dimension are stamped on the first write and checked on
every later one, as the local index does.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import numpy as np

from app.errors import StoreError
from vectorstore.postgres import schema
from vectorstore.postgres.connection import connect
from vectorstore.postgres.keywords import word_count
from vectorstore.postgres.store import as_array, read_stamp
from vectorstore.records import FileRecord, NewChunk
from vectorstore.store import model_mismatch

FOLD_EVERY = 200  # documents committed between two foldings of term changes (and at the end)
FOLD_ABOVE = 20_000  # term change rows worth folding (readers sum what is not folded yet)
# A file's chunks' contribution to the BM25 statistics, added (sign 1) or taken away (-1).
_TERM_CHANGES = """
INSERT INTO docchat_term_changes (lexeme, chunks, words)
SELECT lexeme, %(sign)s * count(*), 0 FROM docchat_chunks c, unnest(tsvector_to_array(c.tsv)) AS lexeme
WHERE c.root = %(root)s AND c.source = %(source)s GROUP BY lexeme
UNION ALL
SELECT '', %(sign)s * count(*), %(sign)s * sum(words) FROM docchat_chunks
WHERE root = %(root)s AND source = %(source)s HAVING count(*) > 0
"""
_FOLD = """
WITH moved AS (DELETE FROM docchat_term_changes RETURNING lexeme, chunks, words)
INSERT INTO docchat_terms (lexeme, chunks, words) SELECT lexeme, sum(chunks), sum(words) FROM moved GROUP BY lexeme
ON CONFLICT (lexeme) DO UPDATE SET chunks = docchat_terms.chunks + EXCLUDED.chunks,
                                   words = docchat_terms.words + EXCLUDED.words
"""

if TYPE_CHECKING:
    from app.config import Settings


def checkpoint(name: str) -> None:
    """Named points of a write; the crash tests replace this to stop a child process there."""


def document_key(root: str, source: str) -> int:
    """A signed 64-bit advisory-lock key for one document."""
    digest = hashlib.blake2b(f"{root}\0{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _clean(value):
    """PostgreSQL text cannot hold NUL characters; documents are untrusted and may."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class PostgresWriter:
    """Changes to the index in PostgreSQL (the ``vectorstore.protocol.IndexWriting`` methods)."""

    def __init__(self, settings: "Settings", *, full: bool = False, read_only: bool = False):
        self.settings = settings
        self.full = full
        self.read_only = read_only
        self.changed = False
        self.stamp_model = settings.embedding_model_name  # what a first write stamps
        self.stamp_embedding = settings.embedding_stamp  # ... with how the vectors are computed
        self._conn = None
        self._document = None  # the document(s) whose transaction is open
        self._stamp: tuple[str | None, int | None, str | None] = (None, None, None)
        self._committed = 0  # documents committed since term changes were last folded
        self._cleared = False  # full rebuild: the old rows are gone (in our transaction)
        self._last_change: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "PostgresWriter":
        self._conn = connect(self.settings)
        self._stamp = read_stamp(self._conn)
        self._conn.commit()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._conn is None:
            return
        try:
            if exc_type is None and not self.full:
                self._conn.commit()  # the last document's transaction
            else:
                self._conn.rollback()  # a failed or uncommitted rebuild changes nothing
        finally:
            self._conn.close()
            self._conn = None

    @property
    def model_name(self) -> str | None:
        return None if self.full else self._stamp[0]

    def check_model(self, wanted: str) -> None:
        """Refuse to mix vectors of two models (or two runtimes/precisions of one), as locally."""
        model, dim, embedding = self._stamp
        if model is not None and (model, embedding) != (wanted, self.stamp_embedding):
            raise model_mismatch(model, dim, wanted, embedding, self.stamp_embedding)

    # -- reading ----------------------------------------------------------------------------
    def catalog(self, root: str) -> dict[str, FileRecord]:
        if self.full:
            return {}  # a rebuild re-adds every file
        rows = self._conn.execute("SELECT root, source, size, mtime_ns, sha256, title, ingested_at "
                                  "FROM docchat_files WHERE root = %s", [root]).fetchall()
        self._end_read()
        return {r[1]: FileRecord(*r) for r in rows}

    def stored_vectors(self, root: str, source: str) -> dict[str, np.ndarray]:
        if self.full:
            return {}
        rows = self._conn.execute("SELECT content_hash, embedding FROM docchat_chunks WHERE root = %s AND source = %s",
                                  [root, source]).fetchall()
        self._end_read()
        return {h: as_array(v) for h, v in rows}

    def roots_of(self, source: str) -> list[str]:
        rows = self._conn.execute("SELECT root FROM docchat_files WHERE source = %s", [source]).fetchall()
        self._end_read()
        return [r[0] for r in rows]

    def _end_read(self) -> None:
        if self._document is None and not self.full:
            self._conn.commit()  # no snapshot or lock held between reads

    # -- changes ----------------------------------------------------------------------------
    def delete_file(self, root: str, source: str) -> int:
        self._begin(root, source)
        if not self.full:  # a rebuild starts from nothing: there are no old chunks
            self._conn.execute(_TERM_CHANGES, {"sign": -1, "root": root, "source": source})
        n = self._conn.execute("DELETE FROM docchat_chunks WHERE root = %s AND source = %s", [root, source]).rowcount
        self._conn.execute("DELETE FROM docchat_files WHERE root = %s AND source = %s", [root, source])
        return n

    def add_file(self, record: FileRecord, chunks: list[NewChunk], vectors: np.ndarray) -> int:
        """Replace a file's chunks with these (one transaction with any other change to it)."""
        if chunks:
            self._ensure_stamp(int(np.asarray(vectors).shape[1]))
        self.delete_file(record.root, record.source)
        if chunks:
            from psycopg.types.json import Jsonb

            rows = np.ascontiguousarray(vectors, dtype=np.float32)
            with self._conn.cursor().copy(
                "COPY docchat_chunks (root, source, position, text, content_hash, metadata, embedding, words) "
                "FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "text", "int4", "text", "text", "jsonb", "vector", "int4"])
                for chunk, vector in zip(chunks, rows):
                    metadata, text = _clean(chunk.metadata), _clean(chunk.text)
                    copy.write_row([record.root, record.source, int(metadata["position"]), text,
                                    metadata["content_hash"], Jsonb(metadata), vector, word_count(text)])
            self._conn.execute(_TERM_CHANGES, {"sign": 1, "root": record.root, "source": record.source})
        self._put_file(record)
        checkpoint("file-written")
        return len(chunks)

    def rename_file(self, old_source: str, record: FileRecord, title: str | None = None) -> None:
        """Move a file's chunks to a new path, keeping their vectors."""
        self._begin(record.root, old_source, record.source)
        patch = {"source": record.source} if title is None else {"source": record.source, "title": title}
        self._conn.execute("UPDATE docchat_chunks SET source = %s, metadata = metadata || %s::jsonb "
                           "WHERE root = %s AND source = %s",
                           [record.source, json.dumps(_clean(patch)), record.root, old_source])
        self._conn.execute("DELETE FROM docchat_files WHERE root = %s AND source = %s", [record.root, old_source])
        self._put_file(record)

    def touch_file(self, record: FileRecord) -> None:
        self._begin(record.root, record.source)
        self._conn.execute("UPDATE docchat_files SET size = %s, mtime_ns = %s WHERE root = %s AND source = %s",
                           [record.size, record.mtime_ns, record.root, record.source])

    def _put_file(self, record: FileRecord) -> None:
        from vectorstore.writer import now_iso

        self._conn.execute(
            "INSERT INTO docchat_files (root, source, size, mtime_ns, sha256, title, ingested_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (root, source) DO UPDATE SET size = EXCLUDED.size, "
            "mtime_ns = EXCLUDED.mtime_ns, sha256 = EXCLUDED.sha256, title = EXCLUDED.title, "
            "ingested_at = EXCLUDED.ingested_at",
            [record.root, record.source, record.size, record.mtime_ns, record.sha256, _clean(record.title),
             record.ingested_at or now_iso()],
        )

    def _begin(self, root: str, *sources: str) -> None:
        """Make sure the open transaction is the one of these documents, locked."""
        if self.read_only:
            raise RuntimeError("a read-only writer cannot change the index")
        self.changed = True
        if self.full:
            if not self._cleared:  # one transaction for the whole rebuild, the index held exclusively
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [schema.INDEX_LOCK])
                for table in ("docchat_chunks", "docchat_files", "docchat_terms", "docchat_term_changes"):
                    self._conn.execute(f"DELETE FROM {table}")
                self._cleared = True
            return
        documents = tuple(sorted({(root, s) for s in sources}))
        if documents == self._document:
            return
        self._finish_document()
        self._conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", [schema.INDEX_LOCK])
        for document in documents:  # sorted: two writers renaming cannot deadlock
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [document_key(*document)])
        self._last_change = self._conn.execute("SELECT nextval('docchat_changes')").fetchone()[0]
        self._document = documents

    def _finish_document(self) -> None:
        if self._document is not None:
            self._conn.commit()
            checkpoint("file-committed")
            self._document = None
            self._committed += 1
            if self._committed >= FOLD_EVERY:
                self._fold_terms()

    def _fold_terms(self, least: int = FOLD_ABOVE) -> None:
        """Fold the term changes of committed syncs into ``docchat_terms`` (its own short
        transaction; skipped while another writer folds, or when there is little to fold)."""
        self._committed = 0
        with self._conn.transaction():
            pending = self._conn.execute("SELECT count(*) FROM (SELECT 1 FROM docchat_term_changes LIMIT %s) AS s",
                                         [least]).fetchone()[0]
            if pending < least or not self._conn.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                                         [schema.TERMS_LOCK]).fetchone()[0]:
                return
            self._conn.execute(_FOLD)
            self._conn.execute("DELETE FROM docchat_terms WHERE chunks <= 0 AND lexeme <> ''")

    def _rebuild_graph_if_asked(self) -> None:
        """A full rebuild builds the HNSW index again when DOCCHAT_HNSW_M or
        DOCCHAT_HNSW_EF_CONSTRUCTION changed since it was built (in the same transaction)."""
        built, wanted = schema.built_graph(self._conn), schema.hnsw_graph(self.settings)
        if built is not None and built != wanted:
            self._conn.execute("DROP INDEX docchat_chunks_hnsw")
            self._conn.execute(schema.hnsw_sql(wanted))

    def _ensure_stamp(self, dim: int) -> None:
        """Stamp model, dimension and runtime-precision on the first write; refuse vectors of
        another size, model or runtime later."""
        model, stamped_dim, embedding = self._stamp
        wanted = (self.stamp_model, dim, self.stamp_embedding)
        if self.full and (model, stamped_dim, embedding) != wanted:
            self._begin("", "")  # takes the exclusive lock and clears
            if (model, stamped_dim) != (self.stamp_model, dim):
                for sql in schema.unstamp_sql():
                    self._conn.execute(sql)
                model = stamped_dim = embedding = None
            else:  # same vectors' shape, another runtime: only the stamp changes
                self._write_stamp(dim)
                model, embedding = self.stamp_model, self.stamp_embedding
        if model is None:
            if not self.full:
                self._finish_document()
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [schema.INDEX_LOCK])
                model, stamped_dim, embedding = read_stamp(self._conn)  # another writer may have stamped meanwhile
            if model is None:
                for sql in schema.stamp_sql(dim, schema.hnsw_graph(self.settings)):
                    self._conn.execute(sql)
                self._write_stamp(dim)
                model, stamped_dim, embedding = wanted
            if not self.full:
                self._conn.commit()
        self._stamp = (model, stamped_dim, embedding)
        if stamped_dim != dim:
            raise StoreError(f"New vectors have {dim} dimensions but the index has {stamped_dim}.",
                             fix="Re-embed everything with one model: `docchat ingest --full`.")
        if (model, embedding) != (self.stamp_model, self.stamp_embedding):
            raise model_mismatch(model, stamped_dim, self.stamp_model, embedding, self.stamp_embedding)

    def _write_stamp(self, dim: int) -> None:
        self._conn.execute("INSERT INTO docchat_meta (key, value) VALUES ('model', %s), ('dim', %s), ('embedding', %s) "
                           "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                           [self.stamp_model, str(dim), self.stamp_embedding])

    # -- publishing -------------------------------------------------------------------------
    def commit(self, model_name: str | None = None, embedding: str | None = None) -> int | None:
        """Commit the open transaction; returns a change number, None when nothing changed.

        The stamp is written with the first vectors (the settings' model, runtime and
        precision); a copy of another index (``docchat migrate``, a full rebuild) passes that
        index's ``embedding`` stamp instead, since its vectors are that index's."""
        if self.read_only:
            return None
        if self.full:
            if not self.changed:
                self._begin("", "")  # a rebuild of nothing still empties the index
            if embedding and self._stamp[0] is not None:
                self._conn.execute("UPDATE docchat_meta SET value = %s WHERE key = 'embedding'", [embedding])
            self._rebuild_graph_if_asked()
            number = self._conn.execute("SELECT nextval('docchat_changes')").fetchone()[0]
            self._conn.commit()
            checkpoint("file-committed")
            self._cleared = False
            self._fold_terms(least=1)
            return number
        self._finish_document()
        if self.changed:
            self._fold_terms()
        return self._last_change if self.changed else None
