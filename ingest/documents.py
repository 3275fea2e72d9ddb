"""What a loader returns: a document as titled sections, before splitting."""

from __future__ import annotations

from dataclasses import dataclass, field


class UnreadableFile(Exception):
    """A file that cannot be ingested; the message is the reason shown to the user."""


@dataclass
class Section:
    """A run of text under one heading path (and, for paged formats, on one page).

    A table is a section with ``rows``: ``text`` is its header line and each row is
    (row number, row text); the splitter packs rows into chunks that each repeat the header.
    """

    text: str
    heading: str | None = None  # "Chapter > Section", "Slide 3: Results", "Sheet1"
    page: int | None = None  # 1-based, paged formats (PDF, TIFF) only
    rows: list[tuple[int, str]] | None = None
    ocr: bool = False  # the text was read from an image by OCR, not from the file's text

    def to_json(self) -> list:
        return [self.text, self.heading, self.page, [list(r) for r in self.rows] if self.rows else None, self.ocr]

    @classmethod
    def from_json(cls, data: list) -> "Section":
        text, heading, page, *rest = data
        rows = rest[0] if rest and isinstance(rest[0], list) else None
        return cls(str(text), heading if isinstance(heading, str) else None, page if isinstance(page, int) else None,
                   [(int(n), str(line)) for n, line in rows] if rows else None, bool(rest[1]) if len(rest) > 1 else False)


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parts skipped and why (pages not OCRed, ...)
    attachments: list["Attachment"] = field(default_factory=list)  # a mail's files, each its own document

    def to_json(self) -> dict:
        return {"title": self.title, "sections": [s.to_json() for s in self.sections], "notes": self.notes,
                "attachments": [a.to_json() for a in self.attachments]}

    @classmethod
    def from_json(cls, data: dict) -> "ParsedDocument":
        return cls(str(data["title"]), [Section.from_json(s) for s in data["sections"]],
                   [str(n) for n in data.get("notes", [])],
                   [Attachment.from_json(a) for a in data.get("attachments", [])])

    @property
    def is_empty(self) -> bool:
        return not any(s.text.strip() or s.rows for s in self.sections)


@dataclass
class Attachment:
    """A file attached to a mail, parsed by its own format's parser into a document of its own
    (``document``), or the reason it could not be (``error``). ``name`` is already made safe
    (``ingest.attachments.safe_name``); ``sha256`` and ``size`` are of its decoded bytes."""

    name: str
    sha256: str
    size: int
    document: ParsedDocument | None = None
    error: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "size": self.size, "error": self.error,
                "document": self.document.to_json() if self.document else None}

    @classmethod
    def from_json(cls, data: dict) -> "Attachment":
        document = ParsedDocument.from_json(data["document"]) if data.get("document") else None
        return cls(str(data["name"]), str(data["sha256"]), int(data["size"]), document,
                   str(data["error"]) if data.get("error") else None)


class HeadingPath:
    """The chain of headings above the current point, e.g. "Install > On Linux"."""

    def __init__(self) -> None:
        self._levels: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        self._levels = [(lvl, t) for lvl, t in self._levels if lvl < level] + [(level, title)]

    def __str__(self) -> str:
        return " > ".join(t for _, t in self._levels)

    @property
    def current(self) -> str | None:
        return str(self) or None
