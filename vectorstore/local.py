"""The local FAISS + SQLite index as the ``vectorstore.protocol`` writer (the reader, ``Store``,
already is one)."""

from __future__ import annotations

from vectorstore.store import Store
from vectorstore.writer import IndexWriter


class LocalWriter(IndexWriter):
    """``IndexWriter`` plus the protocol's ``roots_of``, answered by the public reader."""

    def roots_of(self, source: str) -> list[str]:
        live = Store.open_live(self.settings)
        if live is None:
            return []
        try:
            return [d.root for d in live.documents() if d.source == source]
        finally:
            live.close()
