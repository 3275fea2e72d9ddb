"""Conversation memory: threads and their messages in SQLite under the data folder.

Each call opens its own short connection, so one ThreadStore can be shared by the CLI,
the Streamlit page's threads and the tests without "same thread" errors.

Besides the messages, a thread keeps what the chat page lets people attach to it: the
documents its questions were restricted to, a stopped answer's mark, and feedback (thumbs
up/down with a note) per answer. Databases written before those existed are upgraded in
place when opened (columns added, nothing rewritten).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from app.errors import DocchatError, StoreError

TITLE_CHARS = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    answer_json TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages(thread_id, id);
"""
# Columns added after the first release: (table, column, definition). Opening an older
# database adds the missing ones; old rows read as the defaults.
ADDED_COLUMNS = (
    ("threads", "sources", "TEXT NOT NULL DEFAULT '[]'"),  # JSON list: the documents searched
    ("messages", "stopped", "INTEGER NOT NULL DEFAULT 0"),  # 1: the answer was stopped, partial
    ("messages", "feedback", "INTEGER"),  # 1 thumbs up, 0 thumbs down, NULL none
    ("messages", "note", "TEXT NOT NULL DEFAULT ''"),  # the note that came with the feedback
)
THREAD_COLUMNS = "id, title, created, updated, sources"
MESSAGE_COLUMNS = "role, content, answer_json, id, created, stopped, feedback, note"


@dataclass(frozen=True)
class Thread:
    id: str
    title: str
    created: str  # ISO 8601, UTC
    updated: str
    sources: tuple[str, ...] = ()  # the documents its questions were restricted to (none: all)

    @classmethod
    def from_row(cls, row) -> "Thread":
        *head, sources = row
        return cls(*head, tuple(json.loads(sources or "[]")))


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str
    answer_json: str | None = None  # the assistant's Answer.to_dict(), as JSON
    id: int | None = None
    created: str = ""
    stopped: bool = False  # an answer stopped by the user: ``content`` is what had arrived
    feedback: int | None = None  # 1 thumbs up, 0 thumbs down, None none given
    note: str = ""

    @property
    def answer(self) -> dict | None:
        return json.loads(self.answer_json) if self.answer_json else None

    @classmethod
    def from_row(cls, row) -> "Message":
        role, content, answer_json, id_, created, stopped, feedback, note = row
        return cls(role, content, answer_json, id_, created, bool(stopped), feedback, note or "")

    def to_dict(self) -> dict:
        """The message as exported: the answer record parsed, feedback only when given."""
        out = {"role": self.role, "content": self.content, "created": self.created}
        if self.role == "assistant":
            out.update(answer=self.answer, stopped=self.stopped, feedback=_feedback_word(self.feedback),
                       note=self.note)
        return out


def _feedback_word(value: int | None) -> str | None:
    return {1: "up", 0: "down"}.get(value)


class ThreadNotFound(DocchatError):
    """A thread id that does not exist (deleted, or mistyped)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def title_from(question: str) -> str:
    """A thread title from its first question: one line, at most TITLE_CHARS."""
    flat = " ".join(question.split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1].rstrip() + "…"


class ThreadStore:
    """Threads and messages in one SQLite file (``settings.threads_db_path``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
                _add_missing_columns(db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"The conversation database {self.path} cannot be opened ({exc}).",
                fix="Move the file away (conversations in it are lost to docchat) or point "
                "DOCCHAT_DATA_DIR at another folder.",
            ) from exc

    @contextmanager
    def _connect(self):
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            with db:  # one transaction, committed on success
                yield db

    def create(self, title: str | None = None) -> Thread:
        """A new empty thread; its title is set from the first question when not given."""
        now = _now()
        thread = Thread(uuid.uuid4().hex[:12], title_from(title) if title else "", now, now)
        with self._connect() as db:
            db.execute(
                "INSERT INTO threads (id, title, created, updated) VALUES (?, ?, ?, ?)",
                (thread.id, thread.title, thread.created, thread.updated),
            )
        return thread

    def list(self, search: str = "") -> list[Thread]:
        """All threads, most recently active first; with ``search``, those whose title or
        messages contain it (case-insensitive)."""
        sql = f"SELECT {THREAD_COLUMNS} FROM threads"
        params: list = []
        if search.strip():
            pattern = "%" + _like_escaped(search.strip()) + "%"
            sql += (" WHERE title LIKE ? ESCAPE '\\' OR id IN (SELECT thread_id FROM messages"
                    " WHERE content LIKE ? ESCAPE '\\')")
            params = [pattern, pattern]
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY updated DESC, rowid DESC", params).fetchall()
        return [Thread.from_row(row) for row in rows]

    def get(self, thread_id: str) -> Thread:
        with self._connect() as db:
            row = db.execute(f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?", (thread_id,)).fetchone()
        if row is None:
            raise ThreadNotFound(
                f"No conversation thread {thread_id!r}.",
                fix="`docchat threads list` shows the thread ids; leave out --thread to start a new one.",
            )
        return Thread.from_row(row)

    def rename(self, thread_id: str, title: str) -> Thread:
        self.get(thread_id)
        with self._connect() as db:
            db.execute("UPDATE threads SET title = ? WHERE id = ?", (title_from(title), thread_id))
        return self.get(thread_id)

    def delete(self, thread_id: str) -> dict:
        """Delete a thread and its messages. Returns its ``export()``, which ``restore()``
        takes back (the page's undo)."""
        saved = self.export(thread_id)
        with self._connect() as db:
            db.execute("DELETE FROM messages WHERE thread_id = ?", (thread_id,))
            db.execute("DELETE FROM threads WHERE id = ?", (thread_id,))
        return saved

    def messages(self, thread_id: str) -> list[Message]:
        """The thread's messages, oldest first."""
        self.get(thread_id)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? ORDER BY id", (thread_id,)
            ).fetchall()
        return [Message.from_row(row) for row in rows]

    def set_sources(self, thread_id: str, sources: list[str]) -> None:
        """Save the documents the thread's questions are restricted to (empty: all)."""
        self.get(thread_id)
        with self._connect() as db:
            db.execute("UPDATE threads SET sources = ? WHERE id = ?", (json.dumps(sorted(sources)), thread_id))

    def set_feedback(self, message_id: int, feedback: int | None, note: str = "") -> None:
        """Thumbs up (1) or down (0), or none (None), with an optional note, on one answer."""
        if feedback not in (None, 0, 1):
            raise ValueError(f"feedback must be 1 (up), 0 (down) or None, not {feedback!r}")
        with self._connect() as db:
            changed = db.execute(
                "UPDATE messages SET feedback = ?, note = ? WHERE id = ? AND role = 'assistant'",
                (feedback, note.strip(), message_id),
            ).rowcount
        if not changed:
            raise ThreadNotFound(f"No answer with message id {message_id}.")

    def truncate(self, thread_id: str, message_id: int) -> None:
        """Remove the message ``message_id`` and every later one of the thread (regenerate,
        edit and resend: the conversation goes on from before that message)."""
        self.get(thread_id)
        with self._connect() as db:
            db.execute("DELETE FROM messages WHERE thread_id = ? AND id >= ?", (thread_id, message_id))

    def is_empty(self, thread_id: str) -> bool:
        with self._connect() as db:
            row = db.execute("SELECT 1 FROM messages WHERE thread_id = ? LIMIT 1", (thread_id,)).fetchone()
        return row is None

    def export(self, thread_id: str) -> dict:
        """The thread with its messages, feedback and restriction, as plain JSON-ready data."""
        thread = self.get(thread_id)
        return {
            "id": thread.id, "title": thread.title, "created": thread.created, "updated": thread.updated,
            "sources": list(thread.sources), "messages": [m.to_dict() for m in self.messages(thread_id)],
        }  # fmt: skip

    def restore(self, saved: dict) -> Thread:
        """Put back a thread from its ``export()`` (undo of a delete), under its old id."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO threads (id, title, created, updated, sources) VALUES (?, ?, ?, ?, ?)",
                (saved["id"], saved["title"], saved["created"], saved["updated"], json.dumps(saved["sources"])),
            )
            db.executemany(
                "INSERT INTO messages (thread_id, role, content, answer_json, created, stopped, feedback, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(saved["id"], m["role"], m["content"], json.dumps(m["answer"]) if m.get("answer") else None,
                  m["created"], int(m.get("stopped", False)), {"up": 1, "down": 0}.get(m.get("feedback")),
                  m.get("note", "")) for m in saved["messages"]],
            )  # fmt: skip
        return self.get(saved["id"])

    def add_exchange(
        self, thread_id: str, question: str, answer: str, answer_json: str, *, stopped: bool = False
    ) -> None:
        """Record one question and its answer together (both or neither). ``stopped``: the
        answer is the part that had arrived when the user stopped it."""
        now = _now()
        with self._connect() as db:
            title = db.execute("SELECT title FROM threads WHERE id = ?", (thread_id,)).fetchone()
            if title is None:
                raise ThreadNotFound(f"No conversation thread {thread_id!r}.")
            db.executemany(
                "INSERT INTO messages (thread_id, role, content, answer_json, created, stopped) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(thread_id, "user", question, None, now, 0),
                 (thread_id, "assistant", answer, answer_json, now, int(stopped))],
            )
            new_title = title[0] or title_from(question)
            db.execute(
                "UPDATE threads SET updated = ?, title = ? WHERE id = ?", (now, new_title, thread_id)
            )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, column, definition in ADDED_COLUMNS:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
