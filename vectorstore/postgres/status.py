"""What `docchat doctor` reports about the database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vectorstore.postgres.connection import connect, pgvector_version, where
from vectorstore.postgres.schema import built_graph
from vectorstore.postgres.store import read_stamp

if TYPE_CHECKING:
    from app.config import Settings


def database_status(settings: "Settings") -> dict:
    """Reachable, pgvector version, schema version, row counts, model stamp (``StoreError`` if not reachable)."""
    with connect(settings, autocommit=True) as conn:
        model, dim, embedding = read_stamp(conn)
        count = lambda table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        threads = conn.execute("SELECT to_regclass('threads')").fetchone()[0]
        return {
            "where": where(settings.database_dsn),
            "server": conn.execute("SHOW server_version").fetchone()[0],
            "pgvector": pgvector_version(conn),
            "schema": conn.execute("SELECT max(version) FROM docchat_schema").fetchone()[0],
            "chunks": count("docchat_chunks"),
            "files": count("docchat_files"),
            "threads": count("threads") if threads else 0,
            "model": model,
            "dim": dim,
            "embedding": embedding,
            "hnsw": built_graph(conn),  # its m and ef_construction, None when missing
        }
