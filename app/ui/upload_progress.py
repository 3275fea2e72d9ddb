"""Per-file progress of an upload: each file's own row, from queued through parsing and
embedding to indexed, or failed / skipped / not added with the reason.

``FileRows`` follows the ingest's progress events (``ingest.sync``) and knows, per file, its
state and how far it is; it has no Streamlit in it, so tests feed it the events of a real
ingest. ``show_rows`` draws the rows into the page while the ingest runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.ui.sanitize import escape_markdown

# state -> (where its bar starts, where it ends, what the row says)
STATES = {
    "queued": (0.0, 0.0, "queued"),
    "parsing": (0.05, 0.05, "parsing"),
    "parsed": (0.3, 0.3, "parsed"),
    "embedding": (0.3, 0.95, "embedding"),
    "writing": (0.95, 0.95, "writing the index"),
    "indexed": (1.0, 1.0, "indexed"),
}
ENDED = {"indexed", "failed", "skipped", "not added"}
MARKS = {"indexed": ":green[:material/check_circle:]", "failed": ":red[:material/error:]",
         "skipped": ":orange[:material/block:]", "not added": ":orange[:material/block:]"}  # fmt: skip


@dataclass
class FileRow:
    """One uploaded file: its name as sent, where it was saved (its source in the index)."""

    name: str
    source: str | None = None  # None: refused before it was saved
    state: str = "queued"
    reason: str = ""
    chunks: int = 0  # passages the file was split into
    embedded: int = 0
    to_embed: int = 0  # passages of it that needed a vector (the rest kept theirs)

    @property
    def fraction(self) -> float:
        start, end, _ = STATES.get(self.state, (1.0, 1.0, ""))
        if self.state == "embedding" and self.to_embed:
            return start + (end - start) * self.embedded / self.to_embed
        return start

    @property
    def text(self) -> str:
        """What the row says, e.g. ``guide.md · embedding 3/12 passages``."""
        if self.state == "embedding":
            doing = f"embedding {self.embedded}/{_passages(self.to_embed)}" if self.to_embed else "embedding"
        elif self.state == "parsed":
            doing = f"parsed, {_passages(self.chunks)}; waiting to embed"
        elif self.state == "indexed":
            doing = f"indexed, {_passages(self.chunks)}" if self.chunks else "indexed"
        elif self.state in ENDED:
            doing = f"{self.state}: {self.reason}" if self.reason else self.state
        else:
            doing = STATES[self.state][2]
        return f"{self.name} · {doing}"


def _passages(n: int) -> str:
    return f"{n} passage" + ("" if n == 1 else "s")


class FileRows:
    """The rows of one upload, moved along by the ingest's progress events.

    Calling it with an event returns the rows that changed (to redraw only those). Events
    about files of the folder that were not uploaded now are ignored.
    """

    def __init__(self, names: list[str]):
        self.rows = [FileRow(name) for name in names]
        self.by_source: dict[str, FileRow] = {}
        self._parsing: list[FileRow] = []  # not parsed yet, in the order the ingest parses them
        self._workers = 1

    def saved(self, saved, folder: Path) -> list[FileRow]:
        """The uploads were saved into ``folder`` (``SavedUploads``): each saved file under a
        clean, unused name (its source from now on), the others refused with the reason."""
        for name, path in zip(saved.names, saved.saved):
            row = self._waiting(name)
            row.source = path.relative_to(folder).as_posix()
            self.by_source[row.source] = row
        for name, reason in saved.rejected:
            row = self._waiting(name)
            row.state, row.reason = "not added", reason
        return self.rows

    def _waiting(self, name: str) -> FileRow:
        return next(r for r in self.rows if r.name == name and r.source is None and r.state == "queued")

    def __call__(self, event: dict) -> list[FileRow]:
        stage = event.get("stage")
        handler = getattr(self, f"_on_{stage}", None)
        return handler(event) if handler else []

    def _on_parse(self, event: dict) -> list[FileRow]:
        if "files" in event:  # the parse starts: files in this order, so many at a time
            order = [self.by_source[s] for s in event["files"] if s in self.by_source]
            self._parsing = order
            self._workers = max(1, event.get("workers", 1))
            return self._start_next()
        row = self.by_source.get(event.get("file"))
        if row is None:
            return []
        if "error" in event:
            row.state, row.reason = "failed", event["error"]
        else:
            row.state, row.chunks = "parsed", event.get("chunks", 0)
        self._parsing = [r for r in self._parsing if r is not row]
        return [row, *self._start_next()]

    def _start_next(self) -> list[FileRow]:
        """The next files in the parse order are being parsed (as many as there are workers)."""
        started = [r for r in self._parsing[: self._workers] if r.state == "queued"]
        for row in started:
            row.state = "parsing"
        return started

    def _on_embed(self, event: dict) -> list[FileRow]:
        changed = []
        for source, (embedded, to_embed) in event.get("files", {}).items():
            row = self.by_source.get(source)
            if row is not None and row.state in ("parsed", "embedding"):
                row.state, row.embedded, row.to_embed = "embedding", embedded, to_embed
                changed.append(row)
        return changed

    def _on_write(self, event: dict) -> list[FileRow]:
        changed = [r for r in self.rows if r.state in ("parsed", "embedding")]
        for row in changed:
            row.state = "writing"
        return changed

    def _on_done(self, event: dict) -> list[FileRow]:
        summary = event.get("summary", {})
        indexed = {*summary.get("added", []), *summary.get("updated", []), *summary.get("unchanged", []),
                   *(new for _, new in summary.get("renamed", []))}  # fmt: skip
        reasons = {s: ("failed", r) for s, r in summary.get("failed", [])}
        reasons |= {s: ("skipped", r) for s, r in summary.get("skipped", [])}
        for source, row in self.by_source.items():
            if source in reasons:
                row.state, row.reason = reasons[source]
            elif source in indexed and row.state not in ENDED:
                row.state = "indexed"
        return list(self.by_source.values())

    def stopped(self) -> list[FileRow]:
        """The ingest raised (its error is shown): the files it had not finished are not indexed."""
        changed = [r for r in self.rows if r.state not in ENDED]
        for row in changed:
            row.state, row.reason = "failed", "the ingest stopped (see the message below)"
        return changed

    def report(self) -> list[tuple[str, str]]:
        """How each file ended, as (state, text): kept to show after the page reruns."""
        return [(r.state, r.text) for r in self.rows]


def show_rows(rows: FileRows):
    """Draw one row per file now; returns ``draw(changed_rows)`` to redraw the rows that moved."""
    slots = {id(row): st.empty() for row in rows.rows}

    def draw(row: FileRow) -> None:
        if row.state in ENDED:
            slots[id(row)].markdown(f"{MARKS[row.state]} {escape_markdown(row.text)}")
        else:
            slots[id(row)].progress(row.fraction, text=escape_markdown(row.text))

    def redraw(changed: list[FileRow]) -> None:
        for row in changed:
            draw(row)

    redraw(rows.rows)
    return redraw


def show_line(state: str, text: str) -> None:
    """How one file of the last upload ended (shown after the page reran)."""
    st.markdown(f"{MARKS.get(state, ':material/pending:')} {escape_markdown(text)}")
