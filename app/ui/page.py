"""The docchat chat page: `docchat chat` runs it with `streamlit run app/ui/page.py`.

Thin on purpose: it loads the settings, lets the sidebar panels read their widgets, asks
the engine, and renders. Heavy objects come from ``app.ui.resources`` (built once per
process); rendering and safety rules live in ``app.ui.chat`` and ``app.ui.sanitize``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/ui/page.py` puts app/ui on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.config import load_settings  # noqa: E402
from app.errors import DocchatError  # noqa: E402
from app.ui import chat, panels, resources  # noqa: E402
from app.ui.sanitize import escape_markdown, safe_markdown  # noqa: E402


def page_settings():
    """The same settings `docchat` loaded: it passes its --env-file after `--`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env-file", default=".env")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return load_settings(env_file=args.env_file or None)


def open_index(settings):
    """The live index and its documents, or (None, []) with a notice when there is none yet."""
    try:
        store = resources.store(settings)
    except DocchatError as exc:
        with st.container():
            chat.show_error(exc)
        return None, []
    return store, store.documents()


def main() -> None:
    st.set_page_config(page_title="docchat", page_icon="💬", layout="wide")
    try:
        settings = page_settings()
    except DocchatError as exc:
        chat.show_error(exc)
        st.stop()

    resources.docs_watch(settings)
    notices = st.container()  # index problems show at the top of the page
    with st.sidebar:
        st.title(":material/forum: docchat")
        thread_id = panels.threads_panel(settings)
        with notices:
            store, documents = open_index(settings)
        sources = panels.documents_panel(settings, documents)
        knobs = panels.settings_panel(settings)
    options = chat.ChatOptions(
        thread_id=thread_id,
        sources=sources,
        indexed_files={(d.root, d.source) for d in documents},
        **knobs,
    )

    ready = store is not None and prepare_engine(settings, notices)
    threads = resources.threads(settings)
    if thread_id:
        chat.render_history(threads.messages(thread_id), options)
    elif store is not None:
        st.caption("Ask a question about your documents. Answers cite their sources [n].")
    if ready:
        advice = resources.advice(settings)
        st.caption(escape_markdown(f"Answers by {advice.answering}."), help=advice.advice)

    question = st.chat_input("Ask about your documents", disabled=store is None)
    if question:
        ask(settings, threads, question, options)


def prepare_engine(settings, notices) -> bool:
    """Load the models before the page takes questions (with a spinner), so the first question
    does not wait; a failure is shown with its fix and the page goes on."""
    try:
        resources.engine(settings).prepare()
    except Exception as exc:
        with notices:
            chat.show_error(exc)
        return False
    return True


def ask(settings, threads, question: str, options: chat.ChatOptions) -> None:
    """Show the question, stream the answer, and keep the conversation open."""
    if options.thread_id is None:
        options.thread_id = st.session_state[panels.THREAD] = threads.create().id
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    with st.chat_message("assistant"):
        try:
            engine = resources.engine(settings)
        except Exception as exc:
            chat.show_error(exc)
            return
        answer = chat.stream_answer(engine, question, options)
    if answer is not None:
        st.rerun()  # the sidebar lists the thread under its new title; history renders it


main()
