"""What the chat page keeps with a thread: the document restriction, stopped answers,
feedback with a note, search, truncation (regenerate, edit and resend), export and undo of
a delete, in both conversation stores; and that a database from before these existed opens
and keeps its threads."""

from __future__ import annotations

import json
import sqlite3

import pytest

from app.engine.threads import ThreadStore

OLD_SCHEMA = """
CREATE TABLE threads (id TEXT PRIMARY KEY, title TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL, answer_json TEXT, created TEXT NOT NULL);
INSERT INTO threads VALUES ('old1', 'Old talk', '2025-01-02T10:00:00+00:00', '2025-01-02T10:00:00+00:00');
INSERT INTO messages (thread_id, role, content, answer_json, created) VALUES
    ('old1', 'user', 'Where is the boiler?', NULL, '2025-01-02T10:00:00+00:00'),
    ('old1', 'assistant', 'In the cellar [1].', '{"answer": "In the cellar [1]."}', '2025-01-02T10:00:00+00:00');
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, settings):
    """The conversation store the app opens: the SQLite file, or PostgreSQL (server mode)."""
    from app.config import with_overrides
    from app.engine.threads_pg import open_threads

    if request.param == "postgres":
        settings = with_overrides(settings, database_url=request.getfixturevalue("database_url"))
    return open_threads(settings)


def test_an_older_database_is_upgraded_in_place(settings):
    settings.threads_db_path.parent.mkdir(parents=True)
    with sqlite3.connect(settings.threads_db_path) as db:
        db.executescript(OLD_SCHEMA)
    store = ThreadStore(settings.threads_db_path)
    thread = store.get("old1")
    assert thread.title == "Old talk" and thread.sources == ()
    question, answer = store.messages("old1")
    assert answer.content == "In the cellar [1]." and not answer.stopped and answer.feedback is None
    store.set_feedback(answer.id, 1, "right")  # the new columns work on old rows
    assert store.messages("old1")[1].note == "right"
    ThreadStore(settings.threads_db_path)  # opening again changes nothing
    assert len(store.messages("old1")) == 2


def test_restriction_stopped_feedback_and_export(store):
    thread = store.create()
    store.set_sources(thread.id, ["b.md", "a.pdf"])
    store.add_exchange(thread.id, "First?", "Partial answ", "{}", stopped=True)
    store.add_exchange(thread.id, "Second?", "Whole answer.", json.dumps({"answer": "Whole answer."}))
    messages = store.messages(thread.id)
    assert messages[1].stopped and not messages[3].stopped
    store.set_feedback(messages[3].id, 0, "  missed the second step ")
    with pytest.raises(ValueError):
        store.set_feedback(messages[3].id, 5)

    exported = store.export(thread.id)
    assert exported["sources"] == ["a.pdf", "b.md"] and exported["title"] == "First?"
    assert exported["messages"][1]["stopped"] is True
    last = exported["messages"][3]
    assert last["feedback"] == "down" and last["note"] == "missed the second step"
    assert last["answer"] == {"answer": "Whole answer."} and last["created"]
    json.dumps(exported)  # plain data


def test_search_finds_titles_and_message_text(store):
    boiler = store.create()
    store.add_exchange(boiler.id, "Boiler pressure?", "Between 1.2 and 1.5 bar.", "{}")
    garden = store.create("Garden")
    store.add_exchange(garden.id, "When to water?", "Every morning at 6.", "{}")
    assert [t.id for t in store.list("garden")] == [garden.id]
    assert [t.id for t in store.list("1.5 BAR")] == [boiler.id]  # answers too, any case
    assert store.list("100%") == [] and store.list("_") == []  # LIKE wildcards are literal
    assert len(store.list("")) == 2


def test_truncate_keeps_what_came_before(store):
    thread = store.create()
    store.add_exchange(thread.id, "One?", "1.", "{}")
    store.add_exchange(thread.id, "Two?", "2.", "{}")
    second_question = store.messages(thread.id)[2]
    store.truncate(thread.id, second_question.id)
    assert [m.content for m in store.messages(thread.id)] == ["One?", "1."]
    store.truncate(thread.id, store.messages(thread.id)[0].id)
    assert store.is_empty(thread.id)


def test_delete_then_undo_brings_the_thread_back_whole(store):
    thread = store.create()
    store.set_sources(thread.id, ["a.md"])
    store.add_exchange(thread.id, "Kept?", "Yes.", json.dumps({"answer": "Yes."}))
    store.set_feedback(store.messages(thread.id)[1].id, 1, "good")
    before = store.export(thread.id)
    saved = store.delete(thread.id)
    assert store.list() == []
    store.restore(saved)
    assert store.export(thread.id) == before
