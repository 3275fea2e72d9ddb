"""`docchat ingest --watch`: a real watch (watchfiles on inotify) on a real folder, syncing into
a real index with the packaged embedding model. Each test changes the folder the way people
and editors do, then waits -- on the watch's own sync reports, never a sleep -- until the
index equals what a fresh ingest of the folder gives.

The texts repeat and headings are not embedded, so a thousand files embed a handful of chunks.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import pytest

from app.config import with_overrides
from ingest.sync import sync
from ingest.watch import _Filter, page_watch, watch
from vectorstore import Store

TEXTS = [f"# Note {n}\n\nThe ferry to island {n} leaves from pier {n % 7} at {n % 12 + 1} o'clock." for n in range(20)]
WAIT_S = 120


def index_state(settings) -> list[tuple]:
    """Everything a search can see: each document's chunks, texts, headings, pages and hashes."""
    try:
        store = Store.open(settings)
    except Exception:  # no index yet
        return []
    return sorted((d.source, d.title, h.text, h.heading, h.page, h.metadata["content_hash"])
                  for d in store.documents() for h in store.chunks_of(d.source))


class Watching:
    """A watch on its own thread, and a way to wait until it has caught up with the folder."""

    def __init__(self, settings, folder: Path, embeddings, fresh_dir: Path):
        self.settings, self.folder, self.embeddings, self.fresh_dir = settings, folder, embeddings, fresh_dir
        self.reports, self.changed = [], threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=watch, args=(settings, [folder]), daemon=True,
                                       kwargs={"stop": self.stop, "on_sync": self._on_sync, "embedder": embeddings})
        self.thread.start()
        self.wait_for(lambda: self.reports)  # the first sync: the watch is running

    def _on_sync(self, report) -> None:
        with self.changed:
            self.reports.append(report)
            self.changed.notify_all()

    def wait_for(self, condition) -> None:
        with self.changed:
            assert self.changed.wait_for(condition, timeout=WAIT_S), f"not reached in {WAIT_S} s: {self.reports[-3:]}"

    def caught_up(self) -> list[tuple]:
        """Waits until the watched index equals a fresh ingest of the folder as it is now; returns it."""
        fresh = with_overrides(self.settings, index_dir=self.fresh_dir / f"fresh{len(os.listdir(self.fresh_dir))}")
        sync(fresh, [self.folder], embedder=self.embeddings)
        expected = index_state(fresh)
        self.wait_for(lambda: index_state(self.settings) == expected)
        assert all(r.error is None for r in self.reports)
        return expected

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def watching(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "fresh").mkdir()
    for n in range(3):
        (docs / f"note{n}.md").write_text(TEXTS[n])
    quick = with_overrides(settings, embed_headings=False, watch_debounce_ms=100)
    watcher = Watching(quick, docs, embeddings, tmp_path / "fresh")
    yield watcher
    watcher.close()


def test_add_edit_rename_and_delete_are_synced(watching):
    docs = watching.folder
    assert {row[0] for row in watching.caught_up()} == {"note0.md", "note1.md", "note2.md"}
    (docs / "sub").mkdir()
    (docs / "sub" / "added.md").write_text(TEXTS[5])
    assert "sub/added.md" in {row[0] for row in watching.caught_up()}
    (docs / "note0.md").write_text(TEXTS[6])
    assert any("island 6" in row[2] for row in watching.caught_up() if row[0] == "note0.md")
    (docs / "note1.md").rename(docs / "renamed.md")
    assert {row[0] for row in watching.caught_up()} == {"note0.md", "renamed.md", "note2.md", "sub/added.md"}
    assert any(("note1.md", "renamed.md") in r.summary.renamed for r in watching.reports)  # vectors kept, not re-embedded
    (docs / "note2.md").unlink()
    (docs / "sub" / "added.md").unlink()
    assert {row[0] for row in watching.caught_up()} == {"note0.md", "renamed.md"}


def test_a_burst_of_a_thousand_files_is_synced_in_a_few_batches(watching):
    burst = watching.folder / "burst"
    burst.mkdir()
    for n in range(1000):
        (burst / f"file{n:04d}.md").write_text(TEXTS[n % len(TEXTS)])
    assert len({row[0] for row in watching.caught_up()}) == 1003
    syncs = len(watching.reports) - 1
    assert syncs <= 10, f"{syncs} syncs for one burst"


def test_an_editors_save_via_rename_and_its_temp_files(watching):
    docs = watching.folder
    # vim-style: a swap file, then the new text written beside the file and renamed over it
    (docs / ".note0.md.swp").write_bytes(b"\x00swap")
    (docs / "note0.md~").write_text("backup of the old text")
    temp = docs / ".note0.md.tmp1234"
    with open(temp, "w") as handle:  # written in two parts, as a large save is
        handle.write(TEXTS[10][:20])
        handle.flush()
        handle.write(TEXTS[10][20:])
    os.replace(temp, docs / "note0.md")
    (docs / ".note0.md.swp").unlink()
    (docs / "note0.md~").unlink()
    state = watching.caught_up()
    assert any("island 10" in row[2] for row in state if row[0] == "note0.md")
    assert {row[0] for row in state} == {"note0.md", "note1.md", "note2.md"}


def test_editor_and_hidden_files_do_not_start_a_sync():
    from watchfiles import Change

    accept = _Filter()
    assert accept(Change.modified, "/docs/guide.md")
    for ignored in ("/docs/.guide.md.swp", "/docs/guide.md~", "/docs/.git/index", "/docs/.cache/x.md",
                    "/docs/__pycache__/x.pyc"):
        assert not accept(Change.modified, ignored), ignored


def test_the_chat_pages_documents_folder_is_kept_in_sync_when_the_setting_is_on(settings, embeddings):
    assert page_watch(settings, embeddings) is None  # DOCCHAT_WATCH_DOCS is off by default
    on = with_overrides(settings, watch_docs=True, watch_debounce_ms=100, embed_headings=False)
    reports = queue.Queue()
    handle = page_watch(on, embeddings, on_sync=reports.put)
    try:
        reports.get(timeout=WAIT_S)  # the first sync of the (empty) documents folder
        (on.docs_path / "dropped.md").write_text(TEXTS[4])
        while "dropped.md" not in {row[0] for row in index_state(on)}:
            assert reports.get(timeout=WAIT_S).error is None
    finally:
        handle.stop()
    assert not handle.thread.is_alive()


@pytest.mark.slow
def test_docchat_ingest_watch_on_the_command_line(tmp_path):
    import json
    import signal
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text(TEXTS[0])
    env = {**os.environ, "DOCCHAT_DATA_DIR": str(tmp_path / "data"), "DOCCHAT_WATCH_DEBOUNCE_MS": "100"}
    command = [sys.executable, "-m", "app.cli", "ingest", str(docs), "--watch", "--json"]
    # Ctrl-C as in a terminal: an ignored SIGINT is inherited across exec, and by the time this
    # test runs some earlier one in the suite has left it ignored in this process (seen: 3 fresh-clone
    # runs hung here for 60 s; the disposition printed was SIG_IGN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert json.loads(process.stdout.readline())["added"] == ["first.md"]
        (docs / "second.md").write_text(TEXTS[1])
        assert json.loads(process.stdout.readline())["added"] == ["second.md"]
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors


def test_the_watch_stops_with_a_message_when_its_folder_is_removed(settings, embeddings, tmp_path):
    from app.errors import DocchatError

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.md").write_text(TEXTS[0])
    quick = with_overrides(settings, watch_debounce_ms=100)
    reports, raised = [], []

    def on_sync(report):
        reports.append(report)
        if len(reports) == 1:
            (docs / "note.md").unlink()
            docs.rmdir()

    try:
        watch(quick, [docs], on_sync=on_sync, embedder=embeddings)  # returns only by raising
    except DocchatError as exc:
        raised.append(str(exc))
    assert raised and "was removed or moved: the watch stops" in raised[0]
    assert {row[0] for row in index_state(quick)} == {"note.md"}  # the index keeps what it had


def test_the_page_starts_one_watch_on_its_documents_folder(monkeypatch, isolated_env):
    from streamlit.testing.v1 import AppTest

    from app.config import load_settings
    from app.ui import resources

    monkeypatch.setenv("DOCCHAT_WATCH_DOCS", "true")
    settings = load_settings(env_file=None)
    page = str(Path(__file__).resolve().parents[1] / "app" / "ui" / "page.py")
    at = AppTest.from_file(page, default_timeout=120).run()
    assert not at.exception
    at.run()  # a rerun keeps the same watch
    name = f"docchat-watch {settings.docs_path}"
    assert [t.name for t in threading.enumerate()].count(name) == 1  # started by the page, once
    handle = resources.docs_watch(settings)  # the page's cached watch, shared by the process
    try:
        assert handle.thread.is_alive() and handle.thread.name == name
        assert [t.name for t in threading.enumerate()].count(name) == 1
    finally:
        handle.stop()
