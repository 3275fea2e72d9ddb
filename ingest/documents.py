"""What a loader returns: a document as titled sections, before splitting."""

from __future__ import annotations

from dataclasses import dataclass, field


class UnreadableFile(Exception):
    """A file that cannot be ingested; the message is the reason shown to the user."""


@dataclass
class Section:
    """A run of text under one heading path (and, for PDF, on one page)."""

    text: str
    heading: str | None = None  # "Chapter > Section"
    page: int | None = None  # 1-based, PDF only


@dataclass
class ParsedDocument:
    title: str
    sections: list[Section] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"title": self.title, "sections": [[s.text, s.heading, s.page] for s in self.sections]}

    @classmethod
    def from_json(cls, data: dict) -> "ParsedDocument":
        sections = [Section(str(t), h if isinstance(h, str) else None, p if isinstance(p, int) else None)
                    for t, h, p in data["sections"]]
        return cls(str(data["title"]), sections)

    @property
    def is_empty(self) -> bool:
        return not any(s.text.strip() for s in self.sections)


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
