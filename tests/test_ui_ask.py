"""Asking questions in the page (AppTest) with the real engine, the packaged chat model and a
real index: the answer and its sources, restricting to documents, the session sliders, and
an unreachable backend."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from test_ui_page import PAGE, plain, texts
from tests.servers import closed_port_url

pytestmark = pytest.mark.slow

CORPUS = {
    "widgets.md": "# Widgets\n\n## Maintenance\n\nThe sprocket widget must be oiled every Tuesday. "
    "Use only synthetic oil for the sprocket widget.\n",
    "garden.md": "# Garden\n\n## Watering\n\nTomato plants in the greenhouse are watered every "
    "morning at six with rain water.\n\nWhen must the sprocket widget of the garden gate be "
    "oiled? In autumn.\n",
}
QUESTION = "When must the sprocket widget be oiled?"


@pytest.fixture(scope="module")
def corpus_data(tmp_path_factory, model_cache_dir):
    """One indexed corpus for the module (ingest runs once)."""
    from app.config import Settings
    from ingest.sync import sync

    data = tmp_path_factory.mktemp("ui-data")
    settings = Settings(_env_file=None, data_dir=data, model_cache_dir=model_cache_dir)
    settings.docs_path.mkdir(parents=True)
    for name, text in CORPUS.items():
        (settings.docs_path / name).write_text(text)
    summary = sync(settings)
    assert len(summary.added) == len(CORPUS)
    return data


@pytest.fixture
def indexed(corpus_data, monkeypatch):
    monkeypatch.setenv("DOCCHAT_DATA_DIR", str(corpus_data))
    return corpus_data


def ask(question: str, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(PAGE, default_timeout=280).run()
    return at.chat_input[0].set_value(question).run()


def source_labels(at: AppTest) -> list[str]:
    """The sources under the answers, in the order shown ("[n] file > section")."""
    return [plain(m.value)[7:] for m in at.markdown if m.value.startswith("###### [")]


def test_ask_streams_an_answer_with_its_sources(indexed):
    at = ask(QUESTION)
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    labels = source_labels(at)
    assert labels and "widgets.md > Widgets > Maintenance" in labels[0]  # best source first
    highlighted = [m.value for m in at.markdown if ":orange-background[" in m.value]
    assert highlighted and "oiled every Tuesday" in highlighted[0]  # the supporting sentence, under the source
    assert any(e.label == "How this was answered" for e in at.expander)
    assert "Found in" in texts(at) and "complete in" in texts(at)  # timings
    # Opened, the source shows its passage and, being inside an ingested folder, its file.
    next(b for b in at.button if (b.key or "").startswith("open-m")).click().run()
    assert "Passage 1 of 1 in this document" in texts(at)
    assert any(b.label == "Download the file" for b in at.get("download_button"))
    # The conversation is saved and listed under its first question.
    assert any(QUESTION in plain(b.label) for b in at.button if (b.key or "").startswith("thread-"))
    # The answer itself is the model's text (nonempty; its wording belongs to the model).
    assistant = at.chat_message[1]
    assert plain(assistant.markdown[0].value).strip()


def test_restricting_to_a_document_and_k_change_the_sources(indexed):
    from app.engine.threads import ThreadStore

    at = AppTest.from_file(PAGE, default_timeout=280).run()
    at.multiselect(key="only-sources").set_value(["garden.md"]).run()
    assert "Searching only in garden.md" in [plain(p.proto.popover.label) for p in at.get("popover")]  # above the input
    at.slider(key="k").set_value(1)
    at.slider(key="threshold").set_value(0.0).run()  # a weaker match must still count
    at = ask(QUESTION, at)
    assert not at.exception
    labels = source_labels(at)
    assert len(labels) == 1 and labels[0].startswith("[1] garden.md")
    # Saved with the thread: a new conversation searches everything, reopening restores it.
    thread = ThreadStore(indexed / "threads.sqlite").list()[0]
    assert thread.sources == ("garden.md",)
    at.button(key="new-thread").click().run()
    assert at.multiselect(key="only-sources").value == []
    at.button(key=f"thread-{thread.id}").click().run()
    assert at.multiselect(key="only-sources").value == ["garden.md"]


def test_not_found_shows_the_closest_passages_and_how_to_widen(indexed):
    at = ask("Who won the 1998 chess olympiad?")
    assert not at.exception
    shown = texts(at)
    assert "could not find the answer" in shown and "Nothing was relevant enough" in shown
    closest = source_labels(at)
    scores = [c.value for c in at.caption if c.value.startswith("score ")]
    assert closest and len(scores) == len(closest)  # the nearest passages, with scores
    assert "DOCCHAT_SCORE_THRESHOLD" in shown  # how to widen the search
    assert not any(b.label == "Download the file" for b in at.get("download_button")) or closest


def test_unreachable_backend_shows_the_fix_and_the_page_keeps_working(indexed, monkeypatch):
    from app.engine.threads import ThreadStore

    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", "ollama")
    monkeypatch.setenv("OLLAMA_HOST", closed_port_url())
    before = len(ThreadStore(indexed / "threads.sqlite").list())
    at = ask(QUESTION)
    assert not at.exception
    assert at.error, "the failure is shown"
    shown = texts(at)
    assert "OLLAMA_HOST" in shown  # the fix names the setting to change
    assert not at.chat_input[0].disabled  # the page still takes questions
    assert len(ThreadStore(indexed / "threads.sqlite").list()) == before  # no empty thread left behind
