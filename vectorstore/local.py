"""The local FAISS + SQLite index as the ``vectorstore.protocol`` writer (the reader, ``Store``,
already is one)."""

from __future__ import annotations

import sqlite3

from vectorstore.store import Store
from vectorstore.writer import IndexWriter


class LocalWriter(IndexWriter):
    """``IndexWriter`` plus the protocol's ``roots_of``."""

    def roots_of(self, source: str) -> list[str]:
        db = getattr(self, "db", None)  # the catalog the writer already has open, when it has one
        if db is not None:
            try:
                return [r[0] for r in db.execute("SELECT root FROM files WHERE source = ?", [source])]
            except sqlite3.Error:
                pass
        live = Store.open_live(self.settings)
        if live is None:
            return []
        try:
            return [d.root for d in live.documents() if d.source == source]
        finally:
            live.close()
