"""Open the configured index: local FAISS + SQLite (default) or PostgreSQL + pgvector.

``DOCCHAT_DATABASE_URL`` unset means local. Callers (ingest, the engine, the CLI, the UI, the
API) use these functions and the ``vectorstore.protocol`` methods, never a backend's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from vectorstore.protocol import IndexReader, IndexWriting

if TYPE_CHECKING:
    from app.config import Settings

Kind = Literal["local", "postgres"]


def kind_of(settings: "Settings") -> Kind:
    return "postgres" if settings.database_dsn else "local"


def open_store(settings: "Settings", *, check_model: bool = True, kind: Kind | None = None) -> IndexReader:
    """The index for reading; ``StoreError`` when there is none yet or it was built with
    another embedding model (unless ``check_model`` is False)."""
    if (kind or kind_of(settings)) == "postgres":
        from vectorstore.postgres.store import PostgresStore

        return PostgresStore.open(settings, check_model=check_model)
    from vectorstore.store import Store

    return Store.open(settings, check_model=check_model)


def open_writer(settings: "Settings", *, full: bool = False, read_only: bool = False,
                kind: Kind | None = None) -> IndexWriting:
    """The index for writing, as a context manager (``read_only``: a snapshot for comparing)."""
    if (kind or kind_of(settings)) == "postgres":
        from vectorstore.postgres.writer import PostgresWriter

        return PostgresWriter(settings, full=full, read_only=read_only)
    return _local_writer(settings, full=full, read_only=read_only)


def live_version(settings: "Settings") -> str:
    """A token that changes when an open reader may be stale ("" when there is no index yet).

    Local: the live generation's name (a reader holds one generation). PostgreSQL: the index's
    model stamp, since a reader queries the live rows and goes stale only when another process
    rebuilt the index with another model, runtime or precision (`docchat ingest --full`); the
    caller then reopens, which loads the new index or says why it cannot.
    """
    if kind_of(settings) == "postgres":
        from vectorstore.postgres.store import live_stamp

        return live_stamp(settings)
    from vectorstore import layout

    current = layout.current_generation(settings.index_path)
    return current.name if current else ""


def version_of(store: IndexReader) -> str:
    """The ``live_version`` the reader was opened at."""
    path = getattr(store, "path", None)
    return path.name if path is not None else getattr(store, "stamp", "")


def has_index(settings: "Settings") -> bool:
    """Whether anything was ever written (cheap)."""
    if kind_of(settings) == "postgres":
        from vectorstore.postgres.store import has_index as pg_has_index

        return pg_has_index(settings)
    return live_version(settings) != ""


def _local_writer(settings: "Settings", *, full: bool, read_only: bool) -> IndexWriting:
    from vectorstore.local import LocalWriter

    return LocalWriter(settings, full=full, read_only=read_only)
