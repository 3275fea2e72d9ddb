"""What the rest of docchat needs from an index, whichever kind runs.

Two implementations: the local FAISS + SQLite folder (``vectorstore.store.Store`` and
``vectorstore.writer.IndexWriter``, the default) and PostgreSQL + pgvector
(``vectorstore.postgres``), chosen by ``DOCCHAT_DATABASE_URL``; ``vectorstore.backend`` opens
the configured one. Retrieval, fusion, citations and answers see only these methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from vectorstore.records import DocumentInfo, FileRecord, Hit, NewChunk


@runtime_checkable
class IndexReader(Protocol):
    """A read view of the index: search, the catalog, a document's chunks."""

    model_name: str  # the embedding model the vectors were made with
    dim: int

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def search(self, query_vector, k: int, *, sources: list[str] | None = None,
               fetch_k: int | None = None) -> list[Hit]:
        """The k chunks most similar (cosine) to the query vector, best first; ``sources``
        restricts to those paths, or folders when an entry ends with '/'."""

    def keyword_search(self, query: str, k: int, *, sources: list[str] | None = None) -> list[Hit]:
        """The k chunks that best match the query's words, best first (scores rank only)."""

    def has_term(self, word: str, *, sources: list[str] | None = None) -> bool:
        """Whether any chunk contains ``word``."""

    def vectors(self, chunk_ids) -> np.ndarray:
        """The stored (normalised) vectors of these chunks, one row each."""

    def documents(self) -> list[DocumentInfo]:
        """Every ingested file with its chunk count."""

    def chunks_of(self, source: str, root: str | None = None) -> list[Hit]:
        """A file's chunks in file order."""

    def warm(self) -> None:
        """Start reading ahead, in the background, what the first questions will need; a
        long-running app calls it once the index is open (it may do nothing)."""


@runtime_checkable
class IndexWriting(Protocol):
    """Changes to the index. A context manager; ``commit`` makes the changes visible.

    Each file's change (replace, delete, rename) is atomic: a reader or a crash sees the
    file's old chunks or its new ones, never a mix.
    """

    full: bool
    changed: bool

    def __enter__(self) -> "IndexWriting": ...

    def __exit__(self, *exc) -> None: ...

    @property
    def model_name(self) -> str | None:
        """The embedding model stamped on the index (None for an empty one)."""

    def check_model(self, wanted: str) -> None:
        """Raise ``StoreError`` when the index was built with another model."""

    def catalog(self, root: str) -> dict[str, FileRecord]: ...

    def stored_vectors(self, root: str, source: str) -> dict[str, np.ndarray]: ...

    def delete_file(self, root: str, source: str) -> int: ...

    def add_file(self, record: FileRecord, chunks: list[NewChunk], vectors: np.ndarray) -> int: ...

    def rename_file(self, old_source: str, record: FileRecord, title: str | None = None) -> None: ...

    def touch_file(self, record: FileRecord) -> None: ...

    def roots_of(self, source: str) -> list[str]:
        """The ingested folders that hold a file ``source``."""

    def commit(self, model_name: str, embedding: str | None = None) -> int | None:
        """Publish; returns a number for what was written, None when nothing changed."""
