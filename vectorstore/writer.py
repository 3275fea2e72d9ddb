"""The one place that writes the index.

A write never touches the live generation. ``IndexWriter`` makes a new folder with a copy of
the small catalog (files, meta, deleted ids), writes this write's chunks into one new immutable
segment (``segments.py``), hard-links the live generation's segments beside it (no copy: a
one-file change writes about that file's size), fsyncs what is new, signs a manifest and only
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
from vectorstore import layout, segments
from vectorstore.records import FileRecord, NewChunk
from vectorstore.schema import CATALOG_SCHEMA
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
        self._live: Store | None = None  # the live generation, read through as any reader does
        self._work: Path | None = None
        self._db: sqlite3.Connection | None = None  # this write's catalog
        self._segment = ""  # this write's new segment: its rows, and its vectors by chunk id
        self._rows: sqlite3.Connection | None = None
        self._new_vectors: dict[int, np.ndarray] = {}
        self._dropped: set[int] = set()  # chunk ids of live segments this write removes
        self._dim: int | None = None
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
            if self._remove_stale_generations() and self._live is not None:  # left by a crashed or killed write
                # unlinking moved the shared segments' ctimes: vouch again for the base just verified
                layout.vouch(self._base, self._base_manifest["files"], layout.index_key(self.settings.data_path))
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for db in (self._rows, self._db, self._base_db):
            if db is not None:
                db.close()
        self._live = None  # sync's unlocked snapshot must not keep the segments alive
        self._new_vectors = {}
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
        self._live, self._base, self._base_manifest, self._base_db = live, live.path, live.manifest, live._db

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
        live = self._live_rows(root, source, "id, content_hash")
        found = {}
        if live:
            vectors = self._live.vectors([r[0] for r in live])
            found.update((r[1], vectors[i]) for i, r in enumerate(live))
        if self._rows is not None:
            for chunk_id, content_hash in self._rows.execute(
                    "SELECT id, content_hash FROM chunks WHERE root = ? AND source = ?", [root, source]):
                found[content_hash] = self._new_vectors[chunk_id]
        return found

    def _live_rows(self, root: str, source: str, columns: str) -> list[tuple]:
        """A file's rows in the live generation's segments, less those this write dropped."""
        if self._live is None:
            return []
        rows = self._live._db.execute(f"SELECT {columns} FROM chunks WHERE root = ? AND source = ? ORDER BY position",
                                      [root, source]).fetchall()
        return [tuple(r) for r in rows if r[0] not in self._dropped]

    # -- changes ----------------------------------------------------------------------------
    def delete_file(self, root: str, source: str) -> int:
        """Remove a file and its chunks; returns how many chunks left."""
        db = self._begin_change()
        live = [r[0] for r in self._live_rows(root, source, "id")]
        self._dropped.update(live)  # older segments stay as they are: their rows are listed as deleted
        new = [r[0] for r in self._rows.execute("SELECT id FROM chunks WHERE root = ? AND source = ?", [root, source])]
        self._rows.execute("DELETE FROM chunks WHERE root = ? AND source = ?", [root, source])
        for chunk_id in new:
            del self._new_vectors[chunk_id]
        db.execute("DELETE FROM files WHERE root = ? AND source = ?", [root, source])
        return len(live) + len(new)

    def add_file(self, record: FileRecord, chunks: list[NewChunk], vectors: np.ndarray) -> int:
        """Insert (or replace) a file with its chunks and their vectors; returns chunks added."""
        self._begin_change()
        self.delete_file(record.root, record.source)
        if chunks:
            self._check_dim(vectors.shape[1])
            first = self._allocate_ids(len(chunks))
            ids = range(first, first + len(chunks))
            self._rows.executemany(
                f"INSERT INTO chunks ({segments.CHUNK_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                [
                    (i, record.root, record.source, c.metadata["position"], c.text,
                     c.metadata["content_hash"], json.dumps(c.metadata, ensure_ascii=False))
                    for i, c in zip(ids, chunks)
                ],
            )
            self._new_vectors.update(zip(ids, np.asarray(vectors, dtype=np.float32)))
        self._put_file(record)
        return len(chunks)

    def rename_file(self, old_source: str, record: FileRecord, title: str | None = None) -> None:
        """Move a file's chunks to a new path, keeping their vectors (no re-embedding).

        Rows of older segments cannot change: they are copied into this write's segment (new
        ids, same vectors) and dropped from the old one.
        """
        db = self._begin_change()
        live = self._live_rows(record.root, old_source, segments.CHUNK_COLUMNS)
        if live:
            vectors = self._live.vectors([r[0] for r in live])
            first = self._allocate_ids(len(live))
            self._rows.executemany(f"INSERT INTO chunks ({segments.CHUNK_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                                   [(first + n, *row[1:]) for n, row in enumerate(live)])
            self._new_vectors.update((first + n, vectors[n]) for n in range(len(live)))
            self._dropped.update(row[0] for row in live)
        params = [record.source, record.root, old_source]
        if title is None:
            self._rows.execute("UPDATE chunks SET source = ?, metadata = json_set(metadata, '$.source', ?) "
                               "WHERE root = ? AND source = ?", [record.source, *params])
        else:
            self._rows.execute("UPDATE chunks SET source = ?, metadata = json_set(metadata, '$.source', ?, '$.title', ?) "
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

    def _check_dim(self, dim: int) -> None:
        known = self._dim or (self._live.dim if self._live is not None and len(self._live) else None)
        if known is not None and known != dim:
            raise StoreError(
                f"New vectors have {dim} dimensions but the index has {known}.",
                fix="Re-embed everything with one model: `docchat ingest --full`.",
            )
        self._dim = dim

    def _begin_change(self) -> sqlite3.Connection:
        """On the first change: a new generation folder with a copy of the (small) catalog and
        an empty segment for this write's rows. Older segments are linked in at commit."""
        if self._db is not None:
            return self._db
        if self.read_only:
            raise RuntimeError("a read-only IndexWriter cannot change the index")
        generation = self._next_generation()
        self._work = self.index_dir / layout.gen_name(generation)
        self._work.mkdir()
        if self._base is not None:
            shutil.copyfile(self._base / layout.DATABASE, self._work / layout.DATABASE)
        self._db = sqlite3.connect(self._work / layout.DATABASE)
        if self._base is None:
            self._db.executescript(CATALOG_SCHEMA)
            self._db.execute("INSERT INTO meta (key, value) VALUES ('created', ?)", [now_iso()])
        self._segment = f"{segments.SEGMENT_PREFIX}{generation:06d}-0"
        self._rows = segments.create_rows(self._work / segments.rows_file(self._segment))
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
    def commit(self, model_name: str, embedding: str | None = None) -> int | None:
        """Write, verify-sign and switch to the new generation; None when nothing changed.

        ``embedding`` stamps how the vectors were computed (default: the settings' runtime and
        precision); a copy of another index passes that index's stamp.
        """
        if self.full and not self.read_only:
            self._begin_change()
        if not self.changed:
            return None
        dim = self._dim or (self._live.dim if self._live is not None else int(self._base_manifest.get("dim", 1)))
        generation = layout.gen_number(self._work.name)
        names, written, counts = self._write_segments(dim)
        for key, value in (("model", model_name), ("dim", str(dim)), ("updated", now_iso())):
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, value])
        self._db.commit()
        self._db.close()
        self._db = None
        checkpoint("vectors-written")
        body = {"model": model_name, "embedding": embedding or self.settings.embedding_stamp, "dim": dim,
                "generation": generation, "created": now_iso(), "segments": names, "counts": counts}
        linked = {f: self._base_manifest["files"][f] for name in names if name not in written
                  for f in segments.files_of(name)}
        secret = layout.index_key(self.settings.data_path)
        files = layout.write_manifest(self._work, body, secret, linked)
        for name in [layout.DATABASE, *(f for name in written for f in segments.files_of(name))]:
            layout.fsync_path(self._work / name)
        layout.fsync_path(self._work)
        checkpoint("manifest-written")
        self._switch_to(self._work.name)
        work, self._work = self._work, None  # live now: never removed as an unfinished copy
        checkpoint("switched")
        layout.write_newest(self.index_dir, generation, secret)
        self._remove_stale_generations()
        layout.vouch(work, files, secret)  # after the last link/unlink: the next open need not hash them
        return generation

    def _write_segments(self, dim: int) -> tuple[list[str], set[str], dict[str, int]]:
        """This write's segment, links to the live ones still used, merges; returns the
        generation's segment names, those written now (the rest are links) and their sizes."""
        names = [] if self.full or self._live is None else list(self._base_manifest["segments"])
        for name in names:
            for file in segments.files_of(name):
                segments.link(self._base / file, self._work / file)
        new_ids = np.array(sorted(self._new_vectors), dtype=np.int64)
        counts = {part.name: len(part) for part in (self._live._segments if self._live is not None else [])}
        counts[self._segment] = len(new_ids)
        written = set()
        if len(new_ids):
            vectors = np.array([self._new_vectors[i] for i in new_ids], dtype=np.float32).reshape(len(new_ids), dim)
            segments.write_segment(self._work, self._segment, self._rows, new_ids, vectors, dim)
            names.append(self._segment)
            written.add(self._segment)
        else:
            self._rows.close()
            (self._work / segments.rows_file(self._segment)).unlink()
        self._rows = None
        if self._dropped:
            self._db.executemany("INSERT OR IGNORE INTO deleted (id) VALUES (?)", [(i,) for i in sorted(self._dropped)])
        checkpoint("segment-written")
        merged = self._merge(names, dim, new_ids, counts)
        if merged:
            checkpoint("merged")
            target, chosen = merged
            names = [n for n in names if n not in chosen] + ([target] if target else [])
            written = (written - chosen) | ({target} if target else set())
        return names, written, {name: counts[name] for name in names}

    def _merge(self, names: list[str], dim: int, new_ids: np.ndarray,
               counts: dict[str, int]) -> tuple[str | None, set[str]] | None:
        """Merge segments when there are more than ``MAX_SEGMENTS`` (the smallest, down to half
        that many) or when more than half of one is deleted; only live rows are kept. Returns
        the merged segment's name (None when no row was left) and the segments it replaces
        (``counts`` gains the merged one's size). Segments not merged are not read."""
        deleted = np.fromiter((r[0] for r in self._db.execute("SELECT id FROM deleted")), np.int64)
        held = self._live.ids_held(deleted) if self._live is not None else {}
        held[self._segment] = new_ids[np.isin(new_ids, deleted)]
        live = {name: counts[name] - len(held[name]) for name in names}
        chosen = {name for name in names if live[name] < counts[name] / 2}
        if len(names) > segments.MAX_SEGMENTS:
            for name in sorted(names, key=live.get):
                if len(names) - len(chosen) + 1 <= segments.MAX_SEGMENTS // 2:
                    break
                chosen.add(name)
        if not chosen:
            return None
        target = f"{segments.SEGMENT_PREFIX}{layout.gen_number(self._work.name):06d}-1"
        self._db.commit()  # the merge reads the deleted list from the catalog file
        rows = segments.create_rows(self._work / segments.rows_file(target))
        rows.execute("ATTACH DATABASE ? AS catalog", [str(self._work / layout.DATABASE)])
        for n, name in enumerate(sorted(chosen)):
            rows.execute(f"ATTACH DATABASE ? AS m{n}", [str(self._work / segments.rows_file(name))])
            rows.execute(f"INSERT INTO chunks ({segments.CHUNK_COLUMNS}) SELECT {segments.CHUNK_COLUMNS} FROM m{n}.chunks "
                         "WHERE id NOT IN (SELECT id FROM catalog.deleted)")
            rows.commit()
            rows.execute(f"DETACH DATABASE m{n}")
        rows.execute("DETACH DATABASE catalog")
        kept = np.fromiter((r[0] for r in rows.execute("SELECT id FROM chunks ORDER BY id")), np.int64)
        vectors = np.zeros((len(kept), dim), dtype=np.float32)
        fresh = np.isin(kept, new_ids)
        if fresh.any():
            vectors[fresh] = np.array([self._new_vectors[i] for i in kept[fresh]], dtype=np.float32)
        if (~fresh).any():
            vectors[~fresh] = self._live.vectors(kept[~fresh])
        if len(kept):
            segments.write_segment(self._work, target, rows, kept, vectors, dim)
        else:
            rows.close()
            (self._work / segments.rows_file(target)).unlink()
            target = None
        for name in chosen:
            for file in segments.files_of(name):
                (self._work / file).unlink()
        if target:
            counts[target] = len(kept)
        still_held = np.concatenate([held[n] for n in names if n not in chosen] + [np.zeros(0, np.int64)])
        gone = deleted[~np.isin(deleted, still_held)]  # the merge dropped these rows: no need to list them
        self._db.executemany("DELETE FROM deleted WHERE id = ?", [(int(i),) for i in gone])
        return target, chosen

    def _switch_to(self, name: str) -> None:
        pointer = self.index_dir / (layout.CURRENT + ".tmp")
        layout.write_durably(pointer, name.encode())
        layout.replace_file(pointer, self.index_dir / layout.CURRENT)
        layout.fsync_path(self.index_dir)

    def _remove_stale_generations(self) -> int:
        """Remove every generation but the live one, the one published before it, and our work;
        returns how many were removed.

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
        stale = [path for path in generations if path not in keep]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)
