"""The one place that writes the index.

A write never touches the live generation. ``IndexWriter`` copies it into a new folder,
applies the changes there, writes FAISS and SQLite, fsyncs them, signs a manifest and only
then switches ``CURRENT`` with an atomic ``os.replace``. A ``kill -9`` at any moment leaves the
old generation or the new one live, never a mix; half-written folders are ignored by readers
and removed by the next write. A rebuild (``full``) is written the same way, beside the live
generation, which stays searchable until the switch. The generation published before the
live one is kept until the next write, so a reader that looked up ``CURRENT`` just before a
switch still finds the files it was about to open. One writer at a time, enforced by a
file lock that ``sync`` takes only to publish (parsing and embedding happen before).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.errors import StoreError
from vectorstore import layout
from vectorstore.records import FileRecord, NewChunk
from vectorstore.schema import SCHEMA
from vectorstore.store import Store, connect_readonly, embedding_stamp, model_mismatch

if TYPE_CHECKING:
    from app.config import Settings


def checkpoint(name: str) -> None:
    """Named points of a write; the crash tests replace this to stop a child process there."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class IndexWriter:
    """Changes to the index, applied to a private copy and published atomically by ``commit``.

    Use as a context manager: entering takes the lock (waiting up to
    ``settings.ingest_lock_timeout_s``), leaving releases it and discards an uncommitted copy.
    Nothing is copied until the first change, so a sync with nothing to do writes nothing.
    """

    def __init__(self, settings: "Settings", *, full: bool = False, read_only: bool = False):
        self.settings = settings
        self.read_only = read_only  # a dry run: no lock, no changes
        self.index_dir = settings.index_path
        self.full = full
        self._lock = None
        self._base: Path | None = None  # the live generation we started from
        self._base_manifest: dict = {}
        self._base_db: sqlite3.Connection | None = None
        self._work: Path | None = None
        self._db: sqlite3.Connection | None = None
        self._index = None
        self.changed = False
        self._first_id = 1

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "IndexWriter":
        from filelock import FileLock, Timeout

        if self.read_only:
            self._open_base()
            return self
        self.index_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.index_dir / layout.LOCK
        self._lock = FileLock(str(lock_path), timeout=self.settings.ingest_lock_timeout_s)
        try:
            self._lock.acquire()
        except Timeout:
            raise StoreError(
                f"Another `docchat ingest` is writing the index in {self.index_dir} (lock {lock_path} "
                f"still held after {self.settings.ingest_lock_timeout_s:g} s); nothing was changed.",
                fix="Wait for the other ingest to finish, then run this one again "
                "(or raise DOCCHAT_INGEST_LOCK_TIMEOUT_S to wait longer).",
            ) from None
        try:
            checkpoint("locked")
            self._open_base()
            self._remove_stale_generations()  # left by a crashed or killed write
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for db in (self._db, self._base_db):
            if db is not None:
                db.close()
        self._index = None  # sync's unlocked snapshot must not keep a second copy of the vectors alive
        if self._work is not None:  # not committed: the copy is garbage
            shutil.rmtree(self._work, ignore_errors=True)
        if self._lock is not None:
            self._lock.release()

    def _open_base(self) -> None:
        if self.full:
            self._first_id = self._next_id_of_current()
            return
        live = Store.open_live(self.settings)  # the same verified open as any reader
        if live is None:
            return
        # The writer changes this in-memory FAISS copy and a private copy of the SQLite file.
        self._base, self._base_manifest, self._base_db, self._index = live.path, live.manifest, live._db, live._index

    def _next_id_of_current(self) -> int:
        """A rebuild keeps allocating ids after the old index's, so an old id never names a new chunk."""
        try:
            base = layout.current_generation(self.index_dir)
            layout.verify_live(base, layout.index_key(self.settings.data_path))
            db = connect_readonly(base / layout.DATABASE)
            try:
                return int(db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()[0])
            finally:
                db.close()
        except Exception:  # no index, or a damaged one that --full is replacing
            return 1

    @property
    def model_name(self) -> str | None:
        """The embedding model of the index we started from (None for a new index)."""
        return self._base_manifest.get("model")

    def check_model(self, wanted: str) -> None:
        """Refuse to mix vectors of two models (or two runtimes/precisions of one) in one index."""
        if self.model_name is None:
            return
        recorded, stamp = embedding_stamp(self._base_manifest), self.settings.embedding_stamp
        if self.model_name != wanted or recorded != stamp:
            raise model_mismatch(self.model_name, int(self._base_manifest["dim"]), wanted, recorded, stamp)

    @property
    def db(self) -> sqlite3.Connection | None:
        return self._db or self._base_db

    # -- reading ----------------------------------------------------------------------------
    def catalog(self, root: str) -> dict[str, FileRecord]:
        """The files of one ingested folder, by source path."""
        if self.db is None:
            return {}
        rows = self.db.execute(
            "SELECT root, source, size, mtime_ns, sha256, title, ingested_at FROM files WHERE root = ?", [root]
        )
        return {r[1]: FileRecord(*r) for r in rows}

    def stored_vectors(self, root: str, source: str) -> dict[str, np.ndarray]:
        """A file's current vectors by chunk content hash, so unchanged chunks are not re-embedded."""
        if self.db is None:
            return {}
        rows = self.db.execute("SELECT id, content_hash FROM chunks WHERE root = ? AND source = ?", [root, source]).fetchall()
        if not rows:
            return {}
        vectors = self._index.reconstruct_batch(np.array([r[0] for r in rows], dtype=np.int64))
        return {r[1]: vectors[i] for i, r in enumerate(rows)}

    # -- changes ----------------------------------------------------------------------------
    def delete_file(self, root: str, source: str) -> int:
        """Remove a file and its chunks; returns how many chunks left."""
        db = self._begin_change()
        ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE root = ? AND source = ?", [root, source])]
        if ids:
            self._index.remove_ids(np.array(ids, dtype=np.int64))
        db.execute("DELETE FROM chunks WHERE root = ? AND source = ?", [root, source])
        db.execute("DELETE FROM files WHERE root = ? AND source = ?", [root, source])
        return len(ids)

    def add_file(self, record: FileRecord, chunks: list[NewChunk], vectors: np.ndarray) -> int:
        """Insert (or replace) a file with its chunks and their vectors; returns chunks added."""
        db = self._begin_change()
        self.delete_file(record.root, record.source)
        if chunks:
            self._ensure_index(vectors.shape[1])
            first = self._allocate_ids(len(chunks))
            ids = np.arange(first, first + len(chunks), dtype=np.int64)
            db.executemany(
                "INSERT INTO chunks (id, root, source, position, text, content_hash, metadata) VALUES (?,?,?,?,?,?,?)",
                [
                    (int(i), record.root, record.source, c.metadata["position"], c.text,
                     c.metadata["content_hash"], json.dumps(c.metadata, ensure_ascii=False))
                    for i, c in zip(ids, chunks)
                ],
            )
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self._put_file(record)
        return len(chunks)

    def rename_file(self, old_source: str, record: FileRecord, title: str | None = None) -> None:
        """Move a file's chunks to a new path, keeping their vectors (no re-embedding)."""
        db = self._begin_change()
        params = [record.source, record.root, old_source]
        if title is None:
            db.execute("UPDATE chunks SET source = ?, metadata = json_set(metadata, '$.source', ?) WHERE root = ? AND source = ?",
                       [record.source, *params])
        else:
            db.execute("UPDATE chunks SET source = ?, metadata = json_set(metadata, '$.source', ?, '$.title', ?) "
                       "WHERE root = ? AND source = ?", [record.source, record.source, title, record.root, old_source])
        db.execute("DELETE FROM files WHERE root = ? AND source = ?", [record.root, old_source])
        self._put_file(record)

    def touch_file(self, record: FileRecord) -> None:
        """Same content, new size/mtime: remember them so the next sync skips the file unread."""
        self._begin_change().execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE root = ? AND source = ?",
            [record.size, record.mtime_ns, record.root, record.source],
        )

    def _put_file(self, record: FileRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files (root, source, size, mtime_ns, sha256, title, ingested_at) VALUES (?,?,?,?,?,?,?)",
            [record.root, record.source, record.size, record.mtime_ns, record.sha256, record.title,
             record.ingested_at or now_iso()],
        )

    def _allocate_ids(self, n: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        first = int(row[0]) if row else self._first_id
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_id', ?)", [str(first + n)])
        return first

    def _ensure_index(self, dim: int) -> None:
        import faiss

        if self._index is None:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif self._index.d != dim:
            raise StoreError(
                f"New vectors have {dim} dimensions but the index has {self._index.d}.",
                fix="Re-embed everything with one model: `docchat ingest --full`.",
            )

    def _begin_change(self) -> sqlite3.Connection:
        """On the first change: a private copy of the live generation to change."""
        if self._db is not None:
            return self._db
        if self.read_only:
            raise RuntimeError("a read-only IndexWriter cannot change the index")
        self._work = self.index_dir / layout.gen_name(self._next_generation())
        self._work.mkdir()
        if self._base is not None:
            shutil.copyfile(self._base / layout.DATABASE, self._work / layout.DATABASE)
        self._db = sqlite3.connect(self._work / layout.DATABASE)
        if self._base is None:
            self._db.executescript(SCHEMA)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('created', ?)", [now_iso()])
        self.changed = True
        checkpoint("copied")
        return self._db

    def _next_generation(self) -> int:
        numbers = [layout.gen_number(p.name) or 0 for p in self.index_dir.iterdir()]
        try:
            numbers.append(layout.read_newest(self.index_dir, layout.index_key(self.settings.data_path)))
        except StoreError:
            pass  # a damaged record is replaced when this generation is published
        return max(numbers, default=0) + 1

    # -- publishing -------------------------------------------------------------------------
    def commit(self, model_name: str) -> int | None:
        """Write, verify-sign and switch to the new generation; None when nothing changed."""
        if self.full and not self.read_only:
            self._begin_change()
        if not self.changed:
            return None
        self._ensure_index(self._index.d if self._index is not None else int(self._base_manifest.get("dim", 1)))
        dim = int(self._index.d)
        generation = layout.gen_number(self._work.name)
        for key, value in (("model", model_name), ("dim", str(dim)), ("updated", now_iso())):
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])
        self._db.commit()
        self._db.close()
        self._db = None
        self._write_vectors()
        checkpoint("vectors-written")
        body = {"model": model_name, "embedding": self.settings.embedding_stamp, "dim": dim, "generation": generation,
                "created": now_iso()}
        layout.write_manifest(self._work, body, layout.index_key(self.settings.data_path))
        for name in layout.DATA_FILES:
            layout.fsync_path(self._work / name)
        layout.fsync_path(self._work)
        checkpoint("manifest-written")
        self._switch_to(self._work.name)
        self._work = None
        checkpoint("switched")
        layout.write_newest(self.index_dir, generation, layout.index_key(self.settings.data_path))
        self._remove_stale_generations()
        return generation

    def _write_vectors(self) -> None:
        import faiss

        faiss.write_index(self._index, str(self._work / layout.VECTORS))

    def _switch_to(self, name: str) -> None:
        pointer = self.index_dir / (layout.CURRENT + ".tmp")
        layout.write_durably(pointer, name.encode())
        layout.replace_file(pointer, self.index_dir / layout.CURRENT)
        layout.fsync_path(self.index_dir)

    def _remove_stale_generations(self) -> None:
        """Remove every generation but the live one, the one published before it, and our work.

        Unfinished folders of killed writes are numbered above the live one; published ones below.
        """
        try:
            live = layout.current_generation(self.index_dir)
        except StoreError:
            live = None  # damaged pointer: nothing is live, keep the newest in case it is wanted
        numbers = {p: layout.gen_number(p.name) for p in self.index_dir.iterdir()}
        generations = {p: n for p, n in numbers.items() if n is not None and p.is_dir()}
        keep = {self._work, live}
        if live is not None:
            older = [p for p, n in generations.items() if n < generations.get(live, 0)]
            keep.add(max(older, key=generations.get, default=None))
        else:
            keep.add(max(generations, key=generations.get, default=None))
        for path in generations:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
