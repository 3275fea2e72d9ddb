"""Connections to the configured PostgreSQL, with errors that say what to fix.

Every connection is migrated to the current schema once per process and database, has
pgvector's types registered (numpy arrays in and out) and iterative HNSW scans switched on,
so a source filter does not starve the top-k.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from app.errors import StoreError
from vectorstore.postgres.schema import MIN_PGVECTOR, migrate

if TYPE_CHECKING:
    from app.config import Settings

_migrated: set[str] = set()
_migrated_lock = threading.Lock()
FIX_URL = "Check DOCCHAT_DATABASE_URL (postgresql://USER:PASSWORD@HOST:PORT/DB) and that the server runs; " \
          "`docchat doctor` checks it. Unset it to use the local index."


def where(dsn: str) -> str:
    """The server and database a URL names, without its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "(an unreadable DOCCHAT_DATABASE_URL)"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{host}{port}/{info.get('dbname', '')}"


def connect(settings: "Settings", *, autocommit: bool = False):
    """A new connection, migrated, with pgvector registered; ``StoreError`` when the server
    cannot be reached, refuses us, or lacks pgvector 0.8+."""
    import psycopg

    dsn = settings.database_dsn
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, application_name="docchat")
    except psycopg.Error as exc:
        raise StoreError(f"Cannot connect to the database {where(dsn)}: {_first_line(exc)}", fix=FIX_URL) from None
    try:
        _prepare(conn, settings)
    except StoreError:
        conn.close()
        raise
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"The database {where(dsn)} cannot be set up for docchat: {_first_line(exc)}",
                         fix="Connect as a user that may create tables (and the `vector` extension, once), "
                         "or ask the database's owner to run `CREATE EXTENSION vector`.") from None
    conn.autocommit = autocommit
    return conn


def _prepare(conn, settings: "Settings") -> None:
    from pgvector.psycopg import register_vector

    key = settings.database_dsn
    with _migrated_lock:
        if key not in _migrated:
            _check_pgvector(conn, settings)
            migrate(conn)
            _migrated.add(key)
    register_vector(conn)
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute(f"SET hnsw.ef_search = {int(settings.hnsw_ef_search)}")


def _check_pgvector(conn, settings: "Settings") -> None:
    row = conn.execute("SELECT default_version, installed_version FROM pg_available_extensions "
                       "WHERE name = 'vector'").fetchone()
    if row is None:
        raise StoreError(f"The database server at {where(settings.database_dsn)} has no pgvector extension.",
                         fix="Install pgvector 0.8 or newer on the server (https://github.com/pgvector/pgvector), "
                         "or use a managed PostgreSQL that offers it.")
    version = row[1] or row[0]
    if _version(version) < MIN_PGVECTOR:
        raise StoreError(f"The database has pgvector {version}; docchat needs 0.8.0 or newer "
                         "(iterative index scans for filtered search).",
                         fix="Upgrade the extension: `ALTER EXTENSION vector UPDATE` after installing 0.8+.")


def pgvector_version(conn) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row[0] if row else None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Pool:
    """A few autocommit connections shared by the threads of one process (the UI's sessions,
    the API's workers): each query borrows one, so queries do not queue behind each other."""

    def __init__(self, settings: "Settings", size: int = 8):
        self.settings = settings
        self.size = size
        self._idle: list = []
        self._lock = threading.Lock()
        self._idle.append(connect(settings, autocommit=True))  # fail now, not on the first query

    @contextmanager
    def connection(self):
        import psycopg

        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = connect(self.settings, autocommit=True)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            conn.close()  # broken: not put back
            raise StoreError(f"Lost the database {where(self.settings.database_dsn)}: {_first_line(exc)}",
                             fix=FIX_URL) from None
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
