"""The sidebar's conversations: new, search, grouped by date, open, rename, export (Markdown
and JSON), delete with confirmation and undo. The document restriction of the open thread
is restored when it is opened."""

from __future__ import annotations

import json
from itertools import groupby

import streamlit as st

from app.ui import resources
from app.ui.formatting import age_group, when
from app.ui.sanitize import escape_markdown, safe_filename

THREAD = "thread_id"  # session-state key of the open conversation (None: a new one)
ONLY = "only-sources"  # session-state key of the document restriction (the chooser's key)
DELETED = "deleted_thread"  # the last deleted thread's export, for undo


def threads_panel(settings, known_sources: set[str]) -> str | None:
    """Returns the open thread's id (None: not started yet)."""
    store = resources.threads(settings)
    st.button("New conversation", icon=":material/add:", key="new-thread", width="stretch",
              on_click=open_thread, args=(store, None, known_sources))  # fmt: skip
    search = st.text_input("Search conversations", key="thread-search", placeholder="Search conversations",
                           label_visibility="collapsed", icon=":material/search:")  # fmt: skip
    threads = store.list(search or "")
    current = st.session_state.get(THREAD)
    if current and current not in {t.id for t in store.list()}:
        current = st.session_state[THREAD] = None  # deleted elsewhere (CLI, another tab)
    _undo_notice(store)
    if search and not threads:
        st.caption(escape_markdown(f"No conversation mentions “{search}”."))
    for group, members in groupby(threads, key=lambda t: age_group(t.updated)):
        st.caption(group)
        for thread in members:
            title, date = escape_markdown(thread.title or "Untitled"), f"· {when(thread.updated)}"
            # The open thread stands out by its frame and bold title, in the theme's own text
            # colour: a filled primary button put its date, dark, on the red (unreadable).
            st.button(
                f"**{title}** {date}" if thread.id == current else f"{title} :gray[{date}]",
                key=f"thread-{thread.id}",
                type="secondary" if thread.id == current else "tertiary",
                width="stretch",
                on_click=open_thread,
                args=(store, thread.id, known_sources),
            )
    if current:
        _manage_thread(store, current)
    return current


def open_thread(store, thread_id: str | None, known_sources: set[str]) -> None:
    """Open a thread (None: a new one), with the document restriction it was saved with."""
    st.session_state[THREAD] = thread_id
    saved = store.get(thread_id).sources if thread_id else ()
    st.session_state[ONLY] = [s for s in saved if s in known_sources]


def _manage_thread(store, thread_id: str) -> None:
    thread = store.get(thread_id)
    with st.expander("Rename, export or delete", icon=":material/more_horiz:"):
        title = st.text_input("Title", value=thread.title, key=f"title-{thread_id}")
        st.button("Rename", key="rename-thread", disabled=not title.strip(),
                  on_click=_rename, args=(store, thread_id))  # fmt: skip
        name = safe_filename(thread.title or "conversation", default="conversation")
        left, right = st.columns(2)
        # Built when clicked, so an answer saved since this run drew the page is in it.
        left.download_button("Markdown", lambda: thread_markdown(store.export(thread_id)), file_name=f"{name}.md",
                             mime="text/markdown", key="export-md", on_click="ignore",
                             icon=":material/download:")  # fmt: skip
        right.download_button("JSON", lambda: json.dumps(store.export(thread_id), indent=2, ensure_ascii=False),
                              file_name=f"{name}.json", mime="application/json", key="export-json",
                              on_click="ignore", icon=":material/data_object:")  # fmt: skip
        with st.popover("Delete", icon=":material/delete:", key="delete-thread"):
            st.markdown(escape_markdown(f"Delete “{thread.title or 'Untitled'}” and its messages?"))
            st.button("Yes, delete", key="confirm-delete", type="primary", on_click=_delete, args=(store, thread_id))


def _rename(store, thread_id: str) -> None:
    # The title as typed when the button was clicked (callback arguments are from the last run).
    title = st.session_state.get(f"title-{thread_id}", "").strip()
    if title:
        store.rename(thread_id, title)


def _delete(store, thread_id: str) -> None:
    st.session_state[DELETED] = store.delete(thread_id)
    st.session_state[THREAD] = None


def _undo_notice(store) -> None:
    saved = st.session_state.get(DELETED)
    if not saved:
        return
    with st.container(border=True):
        st.caption(escape_markdown(f"Deleted “{saved['title'] or 'Untitled'}”."))
        st.button("Undo", key="undo-delete", icon=":material/undo:", on_click=_undo, args=(store,))


def _undo(store) -> None:
    saved = st.session_state.pop(DELETED, None)
    if saved and saved["id"] not in {t.id for t in store.list()}:
        store.restore(saved)
        st.session_state[THREAD] = saved["id"]


def thread_markdown(exported: dict) -> str:
    """A thread as a Markdown document: questions, answers with their sources, feedback."""
    lines = [f"# {exported['title'] or 'Conversation'}", "", f"Started {exported['created']}"]
    if exported["sources"]:
        lines.append("Searched only in: " + ", ".join(exported["sources"]))
    for message in exported["messages"]:
        lines.append("")
        if message["role"] == "user":
            lines += [f"## {' '.join(message['content'].split())}", ""]
            continue
        lines.append(message["content"].strip() or "(no answer)")
        if message.get("stopped"):
            lines += ["", "*(stopped)*"]
        sources = (message.get("answer") or {}).get("sources") or []
        if sources:
            lines += ["", "Sources:"]
            for s in sources:
                where = f" p. {s['page']}" if s.get("page") is not None else (f" > {s['heading']}" if s.get("heading") else "")
                lines.append(f"- [{s['n']}] {s['source']}{where} (score {s['score']:.2f})")
        if message.get("feedback"):
            lines += ["", f"Feedback: thumbs {message['feedback']}" + (f" — {message['note']}" if message.get("note") else "")]
    return "\n".join(lines) + "\n"
