"""Conversation threads in SQLite: create, list, rename, delete, survive a restart; history trimming."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.engine.history import recent_history
from app.engine.threads import Message, ThreadNotFound, ThreadStore
from app.engine.tokens import estimate_tokens


def test_thread_lifecycle(settings):
    store = ThreadStore(settings.threads_db_path)
    first = store.create()
    second = store.create("Backups")
    store.add_exchange(first.id, "How do I create a branch?", "Use git branch [1].", json.dumps({"cited": [1]}))

    assert [t.id for t in store.list()] == [first.id, second.id]  # most recently active first
    assert store.get(first.id).title == "How do I create a branch?"  # titled by its first question
    messages = store.messages(first.id)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "How do I create a branch?"),
        ("assistant", "Use git branch [1]."),
    ]
    assert messages[1].answer == {"cited": [1]}

    assert store.rename(second.id, "Nightly backups").title == "Nightly backups"
    store.delete(first.id)
    assert [t.id for t in store.list()] == [second.id]
    with pytest.raises(ThreadNotFound, match=first.id):
        store.messages(first.id)


def test_threads_survive_a_new_process(settings):
    store = ThreadStore(settings.threads_db_path)
    thread = store.create("Kept")
    store.add_exchange(thread.id, "q?", "a.", "{}")
    code = (
        "import sys; from app.engine.threads import ThreadStore; s = ThreadStore(sys.argv[1]);"
        "print(s.get(sys.argv[2]).title, len(s.messages(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(settings.threads_db_path), thread.id],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.split() == ["Kept", "2"]


def test_history_keeps_newest_whole_turns_within_budget():
    messages = []
    for i in range(10):
        messages += [Message("user", f"question {i} " + "x" * 40), Message("assistant", f"answer {i} " + "y" * 40)]
    history = recent_history(messages, budget=100, count=estimate_tokens)
    assert history, "the newest turn fits and is kept"
    assert history[-1].content.startswith("answer 9")
    assert history[0].type == "human"  # never an answer without its question
    assert sum(estimate_tokens(m.content) for m in history) <= 100
    assert len(history) < 20


def test_long_old_answers_are_shortened_not_dropped():
    messages = [Message("user", "What is it?"), Message("assistant", "word " * 2000)]
    history = recent_history(messages, budget=400, count=estimate_tokens)
    assert len(history) == 2 and estimate_tokens(history[1].content) <= 210
