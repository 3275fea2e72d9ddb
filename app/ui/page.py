"""The docchat page: `docchat chat` runs it with `streamlit run app/ui/page.py`.

Two pages (Streamlit navigation): Chat and Library. Thin on purpose: each reads its widgets,
calls the engine or the ingest, and renders. Heavy objects come from ``app.ui.resources``
(built once per process); rendering and safety rules live in ``app.ui.chat``,
``app.ui.viewer`` and ``app.ui.sanitize``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import streamlit as st

# `streamlit run app/ui/page.py` puts app/ui on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.config import load_settings  # noqa: E402
from app.errors import DocchatError  # noqa: E402
from app.ui import chat, controls, conversations, panels, resources, welcome  # noqa: E402
from app.ui.page_state import SETTINGS  # noqa: E402
from app.ui.sanitize import escape_markdown, safe_markdown  # noqa: E402

log = logging.getLogger("docchat.ui")


def page_settings():
    """The same settings `docchat` loaded: it passes its --env-file after `--`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env-file", default=".env")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return load_settings(env_file=args.env_file or None)


def open_index(settings):
    """The live index and its documents, or (None, []) when there is none yet."""
    try:
        store = resources.store(settings)
    except DocchatError as exc:
        if settings.index_path.is_dir() and any(settings.index_path.iterdir()):
            chat.show_error(exc)  # an index that is there but cannot be read: that needs a fix
        return None, []
    return store, store.documents()


def main() -> None:
    st.set_page_config(page_title="docchat", page_icon="💬", layout="wide")
    try:
        settings = panels.with_chosen_model(page_settings())
    except DocchatError as exc:
        chat.show_error(exc)
        st.stop()
    st.session_state[SETTINGS] = settings
    quiet_logs(settings)
    resources.docs_watch(settings)
    pages = [
        st.Page(lambda: chat_page(settings), title="Chat", icon=":material/forum:", url_path="chat", default=True),
        st.Page(Path(__file__).with_name("library_view.py"), title="Library", icon=":material/library_books:",
                url_path="library"),
    ]  # fmt: skip
    st.navigation(pages, position="top").run()


def quiet_logs(settings) -> None:
    """One line per answered question at INFO (DOCCHAT_LOG_LEVEL), on the server's output."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(settings.log_level)


def chat_page(settings) -> None:
    threads = resources.threads(settings)
    chat.wait_for_stopped_answer(threads)
    notices = st.container()  # index problems show at the top of the page
    with notices:
        store, documents = open_index(settings)
        panels.show_report()
    known = {d.source for d in documents}
    with st.sidebar:
        thread_id = conversations.threads_panel(settings, known)
        knobs = panels.settings_panel(settings)
    chosen = [s for s in st.session_state.get(conversations.ONLY, []) if s in known]
    options = chat.ChatOptions(
        thread_id=thread_id, sources=chosen, indexed_files={(d.root, d.source) for d in documents},
        store=store, threads=threads, **knobs,
    )  # fmt: skip

    ready = store is not None and prepare_engine(settings, notices)
    typed = bottom_bar(settings, store, documents)  # pinned below, so read first
    question = st.session_state.pop(controls.PENDING, None)
    if typed is not None:
        if typed.files:
            if typed.text.strip():  # asked once the files are in (the ingest reruns the page)
                st.session_state[controls.PENDING] = typed.text
            panels.ingest_uploads(settings, typed.files)  # on success the page reruns here
            st.session_state.pop(controls.PENDING, None)  # it failed (shown): ask what it can
        question = typed.text
    if thread_id:
        history = threads.messages(thread_id)
        chat.render_history(history, options)
    elif store is None:
        welcome.empty_state(settings)
    elif not question:
        welcome.first_screen(settings, store, documents, resources.advice(settings) if ready else None)
    if question and question.strip():
        if store is None:
            st.info("There are no documents to answer from yet: add some first (the clip in the box, "
                    "or the Library page).", icon=":material/upload_file:")  # fmt: skip
            return
        ask(settings, threads, question.strip(), options)


def bottom_bar(settings, store, documents):
    """The document restriction (shown, and changed here) above the input that takes
    questions and files."""
    from ingest.loaders import SUPPORTED

    with st.bottom:
        if documents:
            chosen = st.session_state.get(conversations.ONLY) or []
            label = (f"Searching only in {', '.join(chosen)}" if chosen
                     else f"Searching all {len(documents)} documents")  # fmt: skip
            with st.popover(escape_markdown(label), icon=":material/filter_alt:", type="tertiary"):
                st.multiselect("Search only in", sorted({d.source for d in documents}), placeholder="All documents",
                               key=conversations.ONLY)  # fmt: skip
        return st.chat_input(
            "Ask about your documents" if store is not None else "Add documents with the clip, then ask",
            accept_file="multiple",
            file_type=sorted(s.lstrip(".") for s in SUPPORTED),
            max_upload_size=max(1, int(settings.upload_max_mb)),
            key="question",
        )


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
    """Show the question, stream the answer, and keep the conversation open. A question that
    fails before anything is saved leaves no empty thread behind."""
    created = options.thread_id is None
    if created:
        options.thread_id = st.session_state[conversations.THREAD] = threads.create(question).id
    threads.set_sources(options.thread_id, options.sources)
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    with st.chat_message("assistant"):
        try:
            engine = resources.engine(settings)
            answer = chat.stream_answer(engine, threads, question, options)
        except Exception as exc:
            chat.show_error(exc)
            answer = None
    if answer is None:
        if created and threads.is_empty(options.thread_id):
            threads.delete(options.thread_id)
            st.session_state[conversations.THREAD] = None
        return
    log.info("answered in %.0f ms (%s, %d sources)", answer.timings.total_ms, answer.kind, len(answer.sources))
    st.rerun()  # the sidebar lists the thread under its new title; history renders it


# Streamlit runs this file as "__main__". The ingest's parser workers are started with
# multiprocessing "spawn", which re-imports the parent's main script as "__mp_main__" in
# each worker: without this guard every worker ran the page there, with no Streamlit
# session (the flood of "missing ScriptRunContext" warnings in the server log).
if __name__ == "__main__":
    main()
