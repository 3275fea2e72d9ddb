"""The chat page through Streamlit's AppTest: threads, sources, documents and error states.

These tests need no chat model: conversations are written with the engine's real
ThreadStore and rendered by the real page. Asking questions (real engine, real model) is
in test_ui_ask.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.config import Settings, load_settings
from app.engine.answer import Answer, Source, Timings, ToolCall
from app.engine.threads import ThreadStore
from tests.servers import closed_port_url

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "ui" / "page.py")
TIMEOUT = 120  # the first run in a process loads the embedding model


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()


def texts(at: AppTest) -> str:
    """Everything the page shows as text, in one string to search."""
    parts = [e.value for kind in ("markdown", "caption", "text", "error", "warning", "info", "success")
             for e in getattr(at, kind)]  # fmt: skip
    parts += [e.label for e in at.expander] + [b.label for b in at.button]
    return plain("\n".join(str(p) for p in parts))


def plain(markdown: str) -> str:
    """Markdown with its backslash escapes removed: the text a reader sees."""
    return re.sub(r"\\(.)", r"\1", markdown)


def saved_answer(thread_id: str, root: Path) -> Answer:
    source = Source(
        n=1, source="guide.md", root=str(root), page=None, heading="Install > Linux",
        score=0.8123, snippet="Run make install to set it up.", text="Run make install to set it up.",
    )  # fmt: skip
    return Answer(
        text="Run `make install` [1]. ![pixel](https://attacker.example/p.png)",
        sources=[source], cited=[1], thread_id=thread_id, rewritten_query="how to install",
        tool_calls=[ToolCall("calculator", {"expression": "2+2"}, "4")],
        timings=Timings(retrieve_ms=12.0, first_token_ms=340.0, total_ms=900.0),
    )  # fmt: skip


@pytest.fixture
def threads(settings):
    return ThreadStore(settings.threads_db_path)


@pytest.fixture
def two_threads(threads, isolated_env):
    root = isolated_env / "docs"
    root.mkdir()
    (root / "guide.md").write_text("# Install\n## Linux\nRun make install to set it up.\n")
    first = threads.create()
    answer = saved_answer(first.id, root)
    threads.add_exchange(first.id, "How do I install it?", answer.text, json.dumps(answer.to_dict()))
    second = threads.create("Second talk")
    return first, second


def test_without_an_index_the_page_says_how_to_fix_it(settings):
    at = page()
    assert not at.exception
    shown = texts(at)
    assert "No index yet" in shown
    assert "docchat ingest" in shown  # the fix
    assert at.chat_input[0].disabled  # nothing to ask yet, but the page works
    assert at.button(key="new-thread")


def test_switching_threads_shows_saved_messages_with_sources(two_threads):
    first, second = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    shown = texts(at)
    assert "How do I install it?" in shown and "make install" in shown
    source = next(e for e in at.expander if e.label.startswith("[1]"))
    assert "guide.md > Install > Linux" in plain(source.label) and "0.81" in source.label and "cited" in source.label
    assert "Run make install to set it up." in texts(at)
    assert "how to install" in shown  # the rewritten query, in "How this was answered"
    assert any("Tools used" in e.label for e in at.expander)
    # The saved answer's image cannot load: no image syntax reaches the page.
    assert not any("![" in m.value for m in at.markdown)

    at.button(key=f"thread-{second.id}").click().run()
    assert len(at.chat_message) == 0


def test_source_download_serves_only_files_inside_ingested_folders(two_threads):
    at = page()
    first, _ = two_threads
    at.button(key=f"thread-{first.id}").click().run()
    # No index lists the folder as ingested, so the file is not offered for download.
    assert len(at.get("download_button")) == 0


def test_new_rename_and_delete_thread(two_threads, threads):
    first, second = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    # Typed and clicked in one go, as a person does: the title typed is the one saved.
    at.text_input(key=f"title-{first.id}").set_value("Installing <b>docchat</b>")
    at.button(key="rename-thread").click().run()
    assert threads.get(first.id).title == "Installing <b>docchat</b>"
    label = at.button(key=f"thread-{first.id}").label
    assert "<b>" not in label and plain(label) == "Installing <b>docchat</b>"  # text, not HTML

    at.button(key="delete-thread").click().run()
    assert first.id not in {t.id for t in threads.list()}
    assert len(at.chat_message) == 0
    assert not _has_key(at, "delete-thread")  # no conversation open, nothing to delete

    at.button(key="new-thread").click().run()
    assert not at.exception and len(at.chat_message) == 0


def _has_key(at: AppTest, key: str) -> bool:
    return any(getattr(b, "key", None) == key for b in at.button)


def test_threads_survive_a_restart(two_threads):
    first, second = two_threads
    # A new AppTest is a new page process as far as the page knows; the threads are on disk.
    at = page()
    labels = [plain(b.label) for b in at.button if (b.key or "").startswith("thread-")]
    assert "Second talk" in labels and "How do I install it?" in labels


def test_a_bad_setting_shows_the_fix(monkeypatch):
    monkeypatch.setenv("DOCCHAT_K", "zero")
    at = page()
    assert not at.exception
    shown = texts(at)
    assert "DOCCHAT_K" in shown and ".env.example" in shown
    assert load_settings  # the page used the same loader as the CLI


# -- documents: upload, list, remove, re-sync (real ingest, real embedding model) ---------------
GUIDE = b"# Widgets\n\nA sprocket widget turns at 40 rpm and needs oiling every week.\n"
FAQ = b"<html><body><h1>FAQ</h1><p>The warranty lasts <b>three years</b>.</p></body></html>"
BROKEN_PDF = b"%PDF-1.7 this is not really a PDF"


def upload(at: AppTest, *files) -> AppTest:
    at.get("file_uploader")[0].set_value(list(files))
    return at.button(key="FormSubmitter:upload-Add and index").click().run()


def library_rows(at: AppTest) -> dict[str, int]:
    table = next(d for d in at.dataframe if "chunks" in d.value.columns)
    return dict(zip(table.value["document"], table.value["chunks"]))


@pytest.mark.slow
def test_upload_ingest_list_remove_and_resync(settings):
    at = page()
    at = upload(
        at,
        ("guide.md", GUIDE, "text/markdown"),
        ("../../faq.html", FAQ, "text/html"),  # a hostile name: saved as faq.html, inside the folder
        ("broken.pdf", BROKEN_PDF, "application/pdf"),
    )
    assert not at.exception
    docs = settings.docs_path
    assert sorted(p.name for p in docs.iterdir()) == ["broken.pdf", "faq.html", "guide.md"]
    shown = texts(at)
    assert "Index updated: 2 added" in shown
    assert "Could not index broken.pdf" in shown  # the failed file is named, the rest went in
    rows = library_rows(at)
    assert set(rows) == {"guide.md", "faq.html"} and all(n >= 1 for n in rows.values())
    assert not at.chat_input[0].disabled  # there is an index now: questions can be asked
    assert "guide.md" in at.multiselect(key="only-sources").options

    at.selectbox(key="remove-choice").set_value(f"guide.md ({docs})").run()
    at.button(key="remove-doc").click().run()
    assert set(library_rows(at)) == {"faq.html"}
    assert not (docs / "guide.md").exists()  # the app's own copy is deleted too

    (docs / "notes.txt").write_text("Notes written outside the app: the gate code is 4711.")
    at.button(key="resync").click().run()
    assert set(library_rows(at)) == {"faq.html", "notes.txt"}
    assert "1 added" in texts(at)


def test_uploads_over_the_size_limit_are_refused(monkeypatch, settings):
    monkeypatch.setenv("DOCCHAT_UPLOAD_MAX_MB", "0.001")
    at = upload(page(), ("big.md", b"x" * 5000, "text/markdown"))
    assert not at.exception
    assert "big.md was not added" in texts(at) and "DOCCHAT_UPLOAD_MAX_MB" in texts(at)
    assert not settings.docs_path.exists() or not any(settings.docs_path.iterdir())


def test_settings_panel_shows_the_backend_and_the_doctor_status(monkeypatch):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", closed_port_url())
    at = page()
    assert "Chat model: ollama · llama3.2" in texts(at)
    at.button(key="doctor").click().run()
    assert not at.exception
    shown = texts(at)
    assert "OLLAMA_HOST" in shown  # the failing backend check carries its fix
    assert "no index yet" in shown
    defaults = Settings.model_fields  # the sliders start at the configured values
    assert at.slider(key="k").value == defaults["k"].default
    assert at.slider(key="threshold").value == defaults["score_threshold"].default
