"""Conversation memory: threads and their messages in SQLite under the data folder.

Each call opens its own short connection, so one ThreadStore can be shared by the CLI,
the Streamlit page's threads and the tests without "same thread" errors.
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


@dataclass(frozen=True)
class Thread:
    id: str
    title: str
    created: str
    updated: str


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str
    answer_json: str | None = None  # the assistant's Answer.to_dict(), as JSON

    @property
    def answer(self) -> dict | None:
        return json.loads(self.answer_json) if self.answer_json else None


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

    def list(self) -> list[Thread]:
        """All threads, most recently active first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, title, created, updated FROM threads ORDER BY updated DESC, rowid DESC"
            ).fetchall()
        return [Thread(*row) for row in rows]

    def get(self, thread_id: str) -> Thread:
        with self._connect() as db:
            row = db.execute(
                "SELECT id, title, created, updated FROM threads WHERE id = ?", (thread_id,)
            ).fetchone()
        if row is None:
            raise ThreadNotFound(
                f"No conversation thread {thread_id!r}.",
                fix="`docchat threads list` shows the thread ids; leave out --thread to start a new one.",
            )
        return Thread(*row)

    def rename(self, thread_id: str, title: str) -> Thread:
        self.get(thread_id)
        with self._connect() as db:
            db.execute("UPDATE threads SET title = ? WHERE id = ?", (title_from(title), thread_id))
        return self.get(thread_id)

    def delete(self, thread_id: str) -> None:
        self.get(thread_id)
        with self._connect() as db:
            db.execute("DELETE FROM messages WHERE thread_id = ?", (thread_id,))
            db.execute("DELETE FROM threads WHERE id = ?", (thread_id,))

    def messages(self, thread_id: str) -> list[Message]:
        """The thread's messages, oldest first."""
        self.get(thread_id)
        with self._connect() as db:
            rows = db.execute(
                "SELECT role, content, answer_json FROM messages WHERE thread_id = ? ORDER BY id",
                (thread_id,),
            ).fetchall()
        return [Message(*row) for row in rows]

    def add_exchange(self, thread_id: str, question: str, answer: str, answer_json: str) -> None:
        """Record one question and its answer together (both or neither)."""
        now = _now()
        with self._connect() as db:
            title = db.execute("SELECT title FROM threads WHERE id = ?", (thread_id,)).fetchone()
            if title is None:
                raise ThreadNotFound(f"No conversation thread {thread_id!r}.")
            db.executemany(
                "INSERT INTO messages (thread_id, role, content, answer_json, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [(thread_id, "user", question, None, now), (thread_id, "assistant", answer, answer_json, now)],
            )
            new_title = title[0] or title_from(question)
            db.execute(
                "UPDATE threads SET updated = ?, title = ? WHERE id = ?", (now, new_title, thread_id)
            )
