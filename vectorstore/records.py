"""The values that go in and out of the index."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hit:
    """One retrieved chunk: its text, its score and where it came from."""

    chunk_id: int
    text: str
    score: float
    metadata: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.metadata.get("source", "")

    @property
    def page(self) -> int | None:
        return self.metadata.get("page")

    @property
    def heading(self) -> str | None:
        return self.metadata.get("heading")


@dataclass
class DocumentInfo:
    """One ingested file, as the UI lists it."""

    source: str
    root: str
    title: str
    chunks: int
    size: int
    ingested_at: str


@dataclass
class FileRecord:
    """The catalog row that lets a sync skip a file without reading it."""

    root: str
    source: str
    size: int
    mtime_ns: int
    sha256: str
    title: str = ""
    ingested_at: str = ""


@dataclass
class NewChunk:
    """A chunk ready to be written: its stored text, metadata and (normalised) vector row."""

    text: str
    metadata: dict
