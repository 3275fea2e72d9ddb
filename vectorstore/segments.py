"""Immutable segments: the bulk of the index, written once and shared between generations.

A segment is two files named alike, ``seg-000007-0.faiss`` (its vectors, by chunk id) and
``seg-000007-0.sqlite`` (its chunk rows and their FTS5 index). A generation folder holds a hard
link to each segment it uses plus its own small catalog (``store.sqlite``: files, meta and the
ids deleted from older segments), so a commit writes what changed (a new segment, a catalog)
and links the rest: no unchanged byte is copied, and removing an old generation folder only
drops links. Segments are merged (live rows only) when there are too many, or when most of one
is deleted, so reads stay bounded.

A process keeps the segments it has loaded (by file identity and checksum), so opening the next
generation reads only its new files.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import numpy as np

from vectorstore import layout
from vectorstore.schema import SEGMENT_SCHEMA

SEGMENT_PREFIX = "seg-"
# SQLite attaches at most 10 databases to one connection: the segments, plus room for a merge.
MAX_SEGMENTS = 8
# Past this many vectors a segment is searched approximately (IVF); below it, exactly.
APPROXIMATE_FROM = 100_000

CHUNK_COLUMNS = "id, root, source, position, text, content_hash, metadata"


def vectors_file(name: str) -> str:
    return f"{name}.faiss"


def rows_file(name: str) -> str:
    return f"{name}.sqlite"


def files_of(name: str) -> tuple[str, str]:
    return vectors_file(name), rows_file(name)


def is_segment_file(file_name: str) -> bool:
    stem, _, suffix = file_name.rpartition(".")
    return stem.startswith(SEGMENT_PREFIX) and suffix in ("faiss", "sqlite") and \
        stem[len(SEGMENT_PREFIX):].replace("-", "").isdigit()


# A segment's vectors file this large is memory-mapped rather than read: opening it costs its ids,
# not its vectors, and searches page in only the IVF lists they probe (the OS shares the pages).
MMAP_FROM_BYTES = 64 << 20


class Segment:
    """A segment of a verified generation: its FAISS index (vectors by chunk id) and sorted chunk ids.

    Loaded lazily: a segment vouched for by the index's signed record (``layout.read_vouched``)
    is opened as a file handle and a count, and its FAISS file is read (or memory-mapped) on the
    first search or vector look-up, so a process that only re-syncs a file never reads the bulk.
    The handle keeps the verified file readable after a writer removes its generation folder.
    """

    def __init__(self, name: str, path: Path, count: int | None = None):
        self.name = name
        self._path = path
        self._count = count
        self._index = None
        self._ids: np.ndarray | None = None
        self._handle = layout.open_regular(path)  # the verified file, even if its folder goes
        self._load_lock = threading.Lock()
        self.checked = False  # its rows were found to hold exactly these ids

    @property
    def index(self):
        if self._index is None:
            self._load()
        return self._index

    @property
    def ids(self) -> np.ndarray:  # sorted
        if self._ids is None:
            self._load()
        return self._ids

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def _load(self) -> None:
        import faiss

        with self._load_lock:
            if self._index is not None:
                return
            fd = self._handle.fileno()
            path = f"/proc/self/fd/{fd}" if os.path.exists("/proc/self/fd") else f"/dev/fd/{fd}"
            flags = 0
            if os.fstat(fd).st_size >= MMAP_FROM_BYTES:  # IVF lists and flat codes map differently
                flags = faiss.IO_FLAG_MMAP if b"IwFl" in os.pread(fd, 64, 0) else faiss.IO_FLAG_MMAP_IFC
            try:
                index = faiss.read_index(path, flags)
            except RuntimeError as exc:
                raise layout.damaged(self._path, f"cannot be read ({exc})") from None
            if flags == faiss.IO_FLAG_MMAP:
                # Mapped IVF lists would start 32 prefetch threads per query (5 ms at 100k on 2
                # cores); the page cache serves the probed lists as fast without them.
                lists = faiss.downcast_InvertedLists(faiss.downcast_index(index.index).invlists)
                lists.prefetch_nthread = 0
            ids = faiss.vector_to_array(index.id_map) if index.ntotal else np.zeros(0, dtype=np.int64)
            self._ids = np.sort(ids)
            self._index = index
            self._handle.close()  # FAISS holds what it needs (the data, or its own mapping)

    def __len__(self) -> int:
        return self._count if self._count is not None else int(self.index.ntotal)

    def holds(self, chunk_ids: np.ndarray) -> np.ndarray:
        ids = self.ids
        where = np.searchsorted(ids, chunk_ids)
        where[where >= len(ids)] = 0
        return ids[where] == chunk_ids if len(ids) else np.zeros(len(chunk_ids), dtype=bool)


# -- loading, once per process -----------------------------------------------------------------
_lock = threading.Lock()
_verified: dict[tuple, str] = {}  # (dev, inode, size, mtime_ns) -> sha256 already checked
_loaded: dict[tuple[str, str, str], Segment] = {}  # (name, sha256 of its vectors, of its rows) -> segment


def _identity(path: Path) -> tuple:
    st = os.stat(path, follow_symlinks=False)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def verify_file(path: Path, expected: str) -> bool:
    """Whether a file matches its checksum; a file this process already hashed is not read again."""
    try:
        identity = _identity(path)
        if _verified.get(identity) == expected:
            return True
        matches = layout.file_sha256(path) == expected
    except OSError:  # missing, a folder, a FIFO
        return False
    if matches:
        with _lock:
            _verified[identity] = expected
    return matches


def load(gen_dir: Path, name: str, files: dict[str, str], count: int | None = None) -> Segment:
    """A segment of a verified generation (``files``: its manifest's checksums), from memory when
    this process already has it. With ``count`` (a vouched segment's size) nothing is read until
    the segment is searched; without it, the vectors are loaded now."""
    key = key_of(name, files)
    with _lock:
        found = _loaded.get(key)
    if found is not None:
        return found
    segment = Segment(name, gen_dir / vectors_file(name), count)
    if count is None:
        segment.index  # noqa: B018 - load now: the caller checks it against its rows
    with _lock:
        segment = _loaded.setdefault(key, segment)
    return segment


def key_of(name: str, files: dict[str, str]) -> tuple[str, str, str]:
    return name, files[vectors_file(name)], files[rows_file(name)]


def forget_except(keep: set[tuple[str, str, str]]) -> None:
    """Drop loaded segments no open generation uses any more (called when a newer one opens)."""
    with _lock:
        for key in [k for k in _loaded if k not in keep]:
            del _loaded[key]
        if len(_verified) > 4 * (len(keep) + 8):
            _verified.clear()


# -- writing -------------------------------------------------------------------------------------
def new_vector_index(dim: int, count: int):
    """An exact index for a small segment; IVF (approximate) for one of ``APPROXIMATE_FROM`` or more."""
    import faiss

    if count < APPROXIMATE_FROM:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    lists = int(2 * np.sqrt(count))  # ~2,000 lists at 1M: training and assignment stay minutes, not hours
    return faiss.IndexIDMap2(faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT))


def build_vectors(ids: np.ndarray, vectors: np.ndarray, dim: int):
    """A FAISS index of these vectors: trained first when it is an IVF index."""
    import faiss

    index = new_vector_index(dim, len(ids))
    inner = faiss.downcast_index(index.index)
    if not inner.is_trained:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), 32 * inner.nlist), replace=False)]
        inner.train(np.ascontiguousarray(sample, dtype=np.float32))
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    if isinstance(inner, faiss.IndexIVF):
        inner.make_direct_map()  # reconstruct by id (MMR, merges) needs it; it is saved with the index
    return index


def write_segment(folder: Path, name: str, rows_db: sqlite3.Connection, ids: np.ndarray, vectors: np.ndarray,
                  dim: int) -> None:
    """Finish a segment whose rows are in ``rows_db`` (already in ``folder``): write its vectors."""
    import faiss

    rows_db.commit()
    rows_db.close()
    order = np.argsort(ids)
    faiss.write_index(build_vectors(ids[order], vectors[order], dim), str(folder / vectors_file(name)))


def create_rows(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = OFF")  # a half-written segment is never published: no journal needed
    db.execute("PRAGMA synchronous = OFF")  # fsynced once, before the manifest is signed
    db.executescript(SEGMENT_SCHEMA)
    return db


def link(source: Path, target: Path) -> None:
    """A hard link (the same bytes, no copy); a copy only where the file system has no links."""
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)
