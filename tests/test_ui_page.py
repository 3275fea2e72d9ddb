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


def test_without_an_index_the_page_welcomes_and_offers_upload(settings, threads):
    at = page()
    assert not at.exception and not at.error  # no red error: there is simply nothing yet
    shown = texts(at)
    assert "Welcome to docchat" in shown and "Add and index" in shown
    assert not at.chat_input[0].disabled  # the box takes files (and says to add some)
    at.chat_input[0].set_value("What is in my documents?").run()
    assert "no documents to answer from yet" in texts(at)
    assert threads.list() == []  # a question that could not be asked leaves no thread


def test_switching_threads_shows_saved_messages_with_sources(two_threads):
    first, second = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    shown = texts(at)
    assert "How do I install it?" in shown and "make install" in shown
    assert "[1] guide.md > Install > Linux" in shown and "score 0.81" in shown and "cited" in shown
    assert "Run make install to set it up." in shown
    # [1] in the answer links to its source below the answer.
    answer = next(m.value for m in at.markdown if "make install" in m.value and "#source-1-" in m.value)
    anchor = answer.split("](#")[1].split(")")[0]
    assert any(f'id="{anchor}"' in h.proto.body for h in at.get("html"))
    assert "how to install" in shown  # the rewritten query, in "How this was answered"
    assert any("Tools used" in e.label for e in at.expander)
    assert "Found in 12 ms · first words after 340 ms · complete in 900 ms" in shown  # readable timings
    # The saved answer's image cannot load: no image syntax reaches the page.
    assert not any("![" in m.value for m in at.markdown)

    at.button(key=f"thread-{second.id}").click().run()
    assert len(at.chat_message) == 0


def test_a_source_opens_in_the_viewer_and_serves_only_indexed_files(two_threads):
    first, _ = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    opener = next(b for b in at.button if (b.key or "").startswith("open-m"))
    opener.click().run()
    assert not at.exception
    assert "[1] guide.md > Install > Linux" in texts(at) and "relevance 0.81" in texts(at)
    # No index lists the folder as ingested, so the file is not offered for download.
    assert len(at.get("download_button")) == 2  # the thread's Markdown and JSON exports only


def test_feedback_with_a_note_is_kept_and_exported(two_threads, threads):
    first, _ = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    answer_id = threads.messages(first.id)[1].id
    at.feedback(key=f"fb-{answer_id}").set_value(0).run()
    assert threads.messages(first.id)[1].feedback == 0
    at.text_area(key=f"note-{answer_id}").set_value("Step two is missing")
    at.button(key=f"save-note-{answer_id}").click().run()
    saved = threads.messages(first.id)[1]
    assert (saved.feedback, saved.note) == (0, "Step two is missing")
    exported = threads.export(first.id)["messages"][1]
    assert exported["feedback"] == "down" and exported["note"] == "Step two is missing"
    from app.ui.conversations import thread_markdown

    markdown = thread_markdown(threads.export(first.id))
    assert "## How do I install it?" in markdown and "[1] guide.md > Install > Linux (score 0.81)" in markdown
    assert "thumbs down — Step two is missing" in markdown
    at = page()  # a new session shows the saved rating
    at.button(key=f"thread-{first.id}").click().run()
    assert at.feedback(key=f"fb-{answer_id}").value == 0


def test_regenerate_and_edit_cut_the_thread_back(two_threads, threads):
    first, _ = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    question = threads.messages(first.id)[0]
    at.text_area(key=f"edit-{question.id}").set_value("How do I uninstall it?")
    at.button(key=f"resend-{question.id}").click().run()
    assert not at.exception
    # Without an index nothing can answer; the old question and its answer are gone.
    assert threads.messages(first.id) == []
    assert "no documents to answer from yet" in texts(at)


def test_rename_search_delete_with_confirmation_and_undo(two_threads, threads):
    first, second = two_threads
    at = page()
    at.button(key=f"thread-{first.id}").click().run()
    # Typed and clicked in one go, as a person does: the title typed is the one saved.
    at.text_input(key=f"title-{first.id}").set_value("Installing <b>docchat</b>")
    at.button(key="rename-thread").click().run()
    assert threads.get(first.id).title == "Installing <b>docchat</b>"
    label = at.button(key=f"thread-{first.id}").label
    assert "<b>" not in label and "Installing <b>docchat</b>" in plain(label)  # text, not HTML
    assert "· " in plain(label) and "Today" in texts(at)  # dated, grouped

    at.text_input(key="thread-search").set_value("make install").run()  # an answer's words
    listed = {b.key for b in at.button if (b.key or "").startswith("thread-")}
    assert listed == {f"thread-{first.id}"}
    at.text_input(key="thread-search").set_value("").run()

    at.button(key="confirm-delete").click().run()  # inside the "Delete" confirmation
    assert first.id not in {t.id for t in threads.list()}
    assert len(at.chat_message) == 0 and "Deleted" in texts(at)
    at.button(key="undo-delete").click().run()
    assert first.id in {t.id for t in threads.list()}
    assert [m.name for m in at.chat_message] == ["user", "assistant"]  # reopened, whole

    at.button(key="new-thread").click().run()
    assert not at.exception and len(at.chat_message) == 0


def test_a_stopped_answer_whose_run_is_slow_to_unwind_is_saved_once(threads, settings):
    """Stop pressed while the model is busy (its run only stops at the next token): the next
    run saves what had arrived, shows it from the thread (so it lists and exports), and the
    stopped run, unwinding later, does not save it a second time."""
    import threading

    from app.ui import chat, conversations

    thread = threads.create("Widgets")
    flight = {"thread": thread.id, "question": "When is the widget oiled?", "parts": ["Every ", "Tues"],
              "lock": threading.Lock()}  # fmt: skip
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state[conversations.THREAD] = thread.id
    at.session_state[chat.IN_FLIGHT] = flight
    at.run()
    assert not at.exception
    saved = threads.messages(thread.id)
    assert [(m.role, m.content, m.stopped) for m in saved] == [
        ("user", "When is the widget oiled?", False), ("assistant", "Every Tues", True)]  # fmt: skip
    assert "Stopped: the answer above is the part that had arrived" in texts(at)
    assert "Every Tues" in threads.export(thread.id)["messages"][1]["content"]
    assert chat.IN_FLIGHT not in at.session_state
    assert not chat._claim_save(flight), "the stopped run, unwinding now, must not save again"


def test_threads_survive_a_restart(two_threads):
    first, second = two_threads
    # A new AppTest is a new page process as far as the page knows; the threads are on disk.
    at = page()
    labels = [plain(b.label) for b in at.button if (b.key or "").startswith("thread-")]
    assert any("Second talk" in label for label in labels)
    assert any("How do I install it?" in label for label in labels)


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


def library_rows(at: AppTest) -> dict[str, tuple[str, int]]:
    """The Library page's table: document -> (status, passages)."""
    table = next(d for d in at.dataframe if "passages" in d.value.columns).value
    return {doc: (status, n) for doc, status, n in zip(table["document"], table["status"], table["passages"])}


@pytest.mark.slow
def test_upload_ingest_list_and_resync(settings):
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
    # One line per uploaded file, how it ended: the failed one named with its reason.
    assert "guide.md · indexed, 1 passage" in shown and "faq.html · indexed" in shown
    assert "broken.pdf · failed: " in shown
    assert "What would you like to know?" in shown and "2 documents indexed" in shown  # the first screen
    assert any((b.key or "").startswith("example-") for b in at.button)  # questions from the documents
    assert not at.chat_input[0].disabled
    assert "guide.md" in at.multiselect(key="only-sources").options

    at.switch_page("library_view.py").run()
    rows = library_rows(at)
    assert rows["guide.md"][0] == "indexed" and rows["guide.md"][1] >= 1 and rows["faq.html"][0] == "indexed"
    assert rows["broken.pdf"][0] == "failed"  # with its reason, after a restart too
    (docs / "notes.txt").write_text("Notes written outside the app: the gate code is 4711.")
    at.button(key="resync").click().run()
    assert "1 added" in texts(at) and library_rows(at)["notes.txt"][0] == "indexed"


def test_uploads_over_the_size_limit_are_refused(monkeypatch, settings):
    monkeypatch.setenv("DOCCHAT_UPLOAD_MAX_MB", "0.001")
    at = upload(page(), ("big.md", b"x" * 5000, "text/markdown"))
    assert not at.exception
    assert "big.md · not added: " in texts(at) and "DOCCHAT_UPLOAD_MAX_MB" in texts(at)
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


def test_the_chat_model_is_switched_in_the_page(monkeypatch):
    closed = closed_port_url()
    at = page()
    at.toggle(key="model-menu").set_value(True).run()
    at.selectbox(key="pick-backend").set_value("ollama").run()
    at.text_input(key="pick-ollama-host").set_value(closed).run()
    assert "No Ollama server with a chat model answers" in texts(at)  # and how to get one
    at.text_input(key="pick-model").set_value("qwen2.5:7b")
    at.button(key="use-model").click().run()
    assert not at.exception
    assert "Chat model: ollama · qwen2.5:7b" in texts(at)  # from the next question on, no restart
    at.button(key="reset-model").click().run()
    assert "Chat model: huggingface · SmolLM2-135M-Instruct" in texts(at)
