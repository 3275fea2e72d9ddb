"""The sidebar: conversations, documents and settings. Each panel reads its widgets, calls
one function of the engine or the ingest, and returns what the chat needs."""

from __future__ import annotations

import streamlit as st

from app.ui import library, resources
from app.ui.chat import show_error
from app.ui.sanitize import escape_markdown
from app.ui.uploads import Upload

THREAD = "thread_id"  # session-state key of the open conversation (None: a new one)
REPORT = "ingest_report"  # what the last ingest did, shown after the rerun it triggers
DOCTOR_MARKS = {"ok": ":green[:material/check_circle:]", "warn": ":orange[:material/warning:]",
                "fail": ":red[:material/cancel:]", "info": ":material/info:"}
# sync's progress stages -> (start, end) of the bar, and what to say meanwhile
STAGES = {
    "parse": (0.0, 0.3, "Reading"),
    "embed": (0.3, 0.95, "Embedding chunks"),
    "write": (0.95, 1.0, "Writing the index"),
}


# -- conversations ---------------------------------------------------------------------------
def threads_panel(settings) -> str | None:
    """New, switch, rename, delete. Returns the open thread's id (None: not started yet)."""
    store = resources.threads(settings)
    threads = store.list()
    current = st.session_state.get(THREAD)
    if current and current not in {t.id for t in threads}:
        current = st.session_state[THREAD] = None  # deleted elsewhere (CLI, another tab)

    st.subheader("Conversations")
    # Callbacks run before the script, so every button is drawn knowing the open thread.
    st.button("New conversation", icon=":material/add:", key="new-thread", width="stretch",
              on_click=_open, args=(None,))  # fmt: skip
    for thread in threads:
        st.button(
            escape_markdown(thread.title or "Untitled"),
            key=f"thread-{thread.id}",
            type="primary" if thread.id == current else "tertiary",
            width="stretch",
            on_click=_open,
            args=(thread.id,),
        )
    if current:
        _edit_thread(store, current)
    return current


def _open(thread_id: str | None) -> None:
    st.session_state[THREAD] = thread_id


def _edit_thread(store, thread_id: str) -> None:
    with st.expander("Rename or delete this conversation"):
        title = st.text_input("Title", value=store.get(thread_id).title, key=f"title-{thread_id}")
        left, right = st.columns(2)
        left.button("Rename", key="rename-thread", disabled=not title.strip(),
                    on_click=_rename, args=(store, thread_id))  # fmt: skip
        right.button("Delete", key="delete-thread", type="primary", on_click=_delete, args=(store, thread_id))


def _rename(store, thread_id: str) -> None:
    # The title as typed when the button was clicked (callback arguments are from the last run).
    title = st.session_state.get(f"title-{thread_id}", "").strip()
    if title:
        store.rename(thread_id, title)


def _delete(store, thread_id: str) -> None:
    store.delete(thread_id)
    _open(None)


# -- documents -------------------------------------------------------------------------------
def documents_panel(settings, documents: list) -> list[str]:
    """Upload, list, remove, re-sync, and choose the documents to search. Returns that choice."""
    st.subheader("Documents")
    chosen = st.multiselect(
        "Search only in",
        sorted({d.source for d in documents}),
        placeholder="All documents",
        key="only-sources",
    )
    _show_report()
    # Keyed and tracked, so it stays open across the rerun that follows an ingest.
    with st.expander(
        "Library", expanded=not documents, icon=":material/library_books:", key="library", on_change="rerun"
    ):
        _upload_form(settings)
        st.caption(f"{len(documents)} documents indexed" if documents else "No documents indexed yet.")
        if documents:
            st.dataframe(
                [{"document": d.source, "chunks": d.chunks, "KB": round(d.size / 1024, 1)} for d in documents],
                hide_index=True,
            )
            _remove_form(settings, documents)
        if st.button("Re-sync the documents folder", icon=":material/sync:", key="resync"):
            _run_ingest(settings, lambda progress: (None, library.sync_folder(
                settings, embedder=resources.embedder(settings), progress=progress
            )))  # fmt: skip
    return chosen


def _upload_form(settings) -> None:
    with st.form("upload", clear_on_submit=True, border=False):
        files = st.file_uploader(
            "Add documents",
            accept_multiple_files=True,
            max_upload_size=max(1, int(settings.upload_max_mb)),
            key="uploads",
            help=escape_markdown(f"Saved into {settings.docs_path} and indexed, {settings.upload_max_mb:g} MB at most each."),
        )
        submitted = st.form_submit_button("Add and index", icon=":material/upload_file:")
    if submitted and files:
        uploads = [Upload(f.name, f.getvalue()) for f in files]
        _run_ingest(settings, lambda progress: library.add_uploads(
            settings, uploads, embedder=resources.embedder(settings), progress=progress
        ))  # fmt: skip


def _remove_form(settings, documents: list) -> None:
    labels = {f"{d.source} ({d.root})": d for d in documents}
    choice = st.selectbox("Remove a document", list(labels), index=None, key="remove-choice")
    if st.button("Remove", key="remove-doc", disabled=choice is None, icon=":material/delete:"):
        doc = labels[choice]
        try:
            deleted = library.remove(settings, doc.source, doc.root)
        except Exception as exc:
            show_error(exc)
            return
        what = "removed from the index and its file deleted" if deleted else "removed from the index"
        st.toast(escape_markdown(f"{doc.source}: {what}."))
        st.rerun()


def _run_ingest(settings, action) -> None:
    """Run an ingest with a progress bar, then rerun so every panel sees the new index.

    What changed and which files failed is kept in the session and shown after the rerun.
    """
    bar = st.progress(0.0, text="Indexing…")

    def progress(event: dict) -> None:
        stage, done, total = event.get("stage"), event.get("done", 0), event.get("total") or 0
        if stage not in STAGES:
            return
        start, end, verb = STAGES[stage]
        fraction = start + (end - start) * (done / total if total else 1.0)
        counted = f" {done}/{total}" if total else ""
        bar.progress(min(fraction, 1.0), text=escape_markdown(f"{verb}{counted} {event.get('file', '')}".rstrip()))

    try:
        saved, summary = action(progress)
    except Exception as exc:
        bar.empty()
        show_error(exc)
        return
    st.session_state[REPORT] = _report(saved, summary)
    st.rerun()


def _report(saved, summary) -> list[tuple[str, str]]:
    """(kind, text) lines saying what an ingest did, failures first-class."""
    lines = [("warning", f"{name} was not added: {reason}.") for name, reason in (saved.rejected if saved else [])]
    if summary is not None:
        counts = [len(summary.added), len(summary.updated), len(summary.deleted)]
        lines.append(
            ("success", "Index updated: {} added, {} updated, {} removed, ".format(*counts)
             + f"chunks: {summary.chunks_added} indexed.")
            if any(counts)
            else ("success", "The index is already up to date.")
        )  # fmt: skip
        lines += [("warning", f"Could not index {source}: {reason}") for source, reason in summary.failed]
    return lines


def _show_report() -> None:
    for kind, text in st.session_state.pop(REPORT, []):
        getattr(st, kind)(escape_markdown(text))


# -- settings --------------------------------------------------------------------------------
def settings_panel(settings) -> dict:
    """Backend, model and doctor status; k, temperature and threshold for this session."""
    with st.expander("Settings", icon=":material/settings:"):
        st.caption(
            escape_markdown(
                f"Chat model: {settings.llm_backend} · {settings.llm_model_name}\n\n"
                f"Embeddings: {settings.embedding_backend} · {settings.embedding_model_name}"
            )
        )
        advice = resources.advice(settings)
        if advice.advice:
            st.info(escape_markdown(advice.advice), icon=":material/tips_and_updates:")
        if st.button("Check the set-up (doctor)", key="doctor"):
            _doctor(settings)
        return {
            "k": st.slider("Chunks to retrieve (k)", 1, 20, settings.k, key="k"),
            "temperature": st.slider("Temperature", 0.0, 2.0, float(settings.temperature), 0.05, key="temperature"),
            "score_threshold": st.slider(
                "Score threshold", -1.0, 1.0, float(settings.score_threshold), 0.05, key="threshold",
                help="The best chunk must reach this score, or the answer is \"not found\" (DOCCHAT_SCORE_THRESHOLD).",
            ),
        }  # fmt: skip


def _doctor(settings) -> None:
    """The `docchat doctor` report, as lines with a mark and, for problems, the fix."""
    from app import doctor

    try:
        lines = [
            *doctor.llm_lines(settings),
            *doctor.embedding_lines(settings),
            *doctor.index_lines(settings),
            doctor.data_folder_line(settings),
        ]
    except Exception as exc:
        show_error(exc)
        return
    for line in lines:
        text = f"{DOCTOR_MARKS.get(line.status, '')} **{escape_markdown(line.name)}**: {escape_markdown(line.detail)}"
        if line.fix and line.status in ("warn", "fail"):
            text += f"  \nFix: {escape_markdown(line.fix)}"
        st.markdown(text)
