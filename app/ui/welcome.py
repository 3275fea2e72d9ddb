"""The first screen: what is indexed, three example questions from the user's own documents
(click to ask), which model answers; and, with no index yet, a friendly start centred on
adding documents."""

from __future__ import annotations

import streamlit as st

from app.ui import controls, panels
from app.ui.sanitize import escape_markdown

EXAMPLES = 3
TITLES_SHOWN = 5


def first_screen(settings, store, documents: list, advice) -> None:
    """Arrival with an index: its contents at a glance and questions to start from."""
    st.markdown("### What would you like to know?")
    chunks = sum(d.chunks for d in documents)
    names = [d.title or d.source for d in documents[:TITLES_SHOWN]]
    more = f" and {len(documents) - TITLES_SHOWN} more" if len(documents) > TITLES_SHOWN else ""
    st.markdown(escape_markdown(f"{len(documents)} documents indexed ({chunks} passages): {', '.join(names)}{more}."))
    examples = example_questions(store, documents)
    if examples:
        st.caption("Try one of these, drawn from your documents:")
        for i, question in enumerate(examples):
            st.button(escape_markdown(question), key=f"example-{i}", icon=":material/lightbulb:",
                      on_click=_ask, args=(question,))  # fmt: skip
    if advice is not None:
        st.caption(escape_markdown(f"Answers by {advice.answering}. Answers cite their sources [n]."),
                   help=advice.advice or None)  # fmt: skip


def empty_state(settings) -> None:
    """No index yet: say so kindly and offer the upload, right here."""
    _, middle, _ = st.columns([1, 3, 1])
    with middle:
        st.markdown("### Welcome to docchat")
        st.markdown(
            "Add documents (PDF, Word, HTML, Markdown, text) and ask questions about them. "
            "Answers quote and cite the passages they come from, and nothing leaves this machine."
        )
        panels.upload_form(settings)
        st.caption(escape_markdown(f"Files are saved in {settings.docs_path}. You can also drop them on the "
                                   "question box below, or index a folder with `docchat ingest FOLDER`."))  # fmt: skip


def example_questions(store, documents: list) -> list[str]:
    """Up to three questions, one per document, from the section headings it has."""
    key = ("examples", tuple((d.root, d.source, d.chunks) for d in documents))
    cache = st.session_state.setdefault("_examples", {})
    if key not in cache:
        cache.clear()
        cache[key] = _examples(store, documents)
    return cache[key]


def _examples(store, documents: list) -> list[str]:
    questions = []
    for doc in sorted(documents, key=lambda d: -d.chunks):
        try:
            chunks = store.chunks_of(doc.source, doc.root)
        except Exception:
            continue
        topics = [c.heading.split(">")[-1].strip() for c in chunks if c.heading]
        name = doc.title or doc.source
        topic = next((t for t in topics if t and t.lower() != name.lower()), None)
        if topic and topic.endswith("?"):
            questions.append(topic)  # a heading that is a question already (a FAQ)
        else:
            questions.append(f"What does {name} say about {topic}?" if topic else f"What is {name} about?")
        if len(questions) == EXAMPLES:
            break
    return questions


def _ask(question: str) -> None:
    st.session_state[controls.PENDING] = question
