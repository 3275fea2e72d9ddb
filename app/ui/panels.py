"""Panels shared by the pages: adding documents (upload, ingest with progress, what it did)
and the settings. Each reads its widgets, calls one function of the ingest or the engine,
and returns what the page needs."""

from __future__ import annotations

import streamlit as st

from app.ui import library, resources, upload_progress
from app.ui.chat import show_error
from app.ui.sanitize import escape_markdown
from app.ui.uploads import Upload

REPORT = "ingest_report"  # what the last ingest did, shown after the rerun it triggers
DOCTOR_MARKS = {"ok": ":green[:material/check_circle:]", "warn": ":orange[:material/warning:]",
                "fail": ":red[:material/cancel:]", "info": ":material/info:"}
# sync's progress stages -> (start, end) of the bar, and what to say meanwhile
STAGES = {
    "parse": (0.0, 0.3, "Reading"),
    "embed": (0.3, 0.95, "Embedding chunks"),
    "write": (0.95, 1.0, "Writing the index"),
}


# -- documents -------------------------------------------------------------------------------
def upload_form(settings) -> None:
    """Drop or choose files; they are saved into the documents folder and indexed."""
    show_report()
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
        ingest_uploads(settings, files)


def ingest_uploads(settings, files) -> None:
    """Save and index files the browser sent (the upload form, or the question box), with a
    progress row per file: queued, parsing, embedding, then indexed, or why not."""
    uploads = [Upload(f.name, f.getvalue()) for f in files]
    rows = upload_progress.FileRows([u.name for u in uploads])
    redraw = upload_progress.show_rows(rows)
    run_ingest(settings, lambda: library.add_uploads(
        settings, uploads, embedder=resources.embedder(settings),
        on_saved=lambda saved: redraw(rows.saved(saved, settings.docs_path)),
        progress=lambda event: redraw(rows(event)),
    ), rows=rows, on_error=lambda: redraw(rows.stopped()))  # fmt: skip


def resync(settings) -> None:
    bar = st.progress(0.0, text="Indexing…")
    run_ingest(settings, lambda: (None, library.sync_folder(
        settings, embedder=resources.embedder(settings), progress=lambda event: _move(bar, event)
    )), on_error=bar.empty)  # fmt: skip


def _move(bar, event: dict) -> None:
    """One bar for a whole re-sync (a folder may hold thousands of files)."""
    stage, done, total = event.get("stage"), event.get("done", 0), event.get("total") or 0
    if stage not in STAGES:
        return
    start, end, verb = STAGES[stage]
    fraction = start + (end - start) * (done / total if total else 1.0)
    counted = f" {done}/{total}" if total else ""
    bar.progress(min(fraction, 1.0), text=escape_markdown(f"{verb}{counted} {event.get('file', '')}".rstrip()))


def run_ingest(settings, action, *, rows=None, on_error=None) -> None:
    """Run an ingest (``action()`` -> (saved, summary), drawing its own progress), then rerun
    so every panel sees the new index. What changed, and per uploaded file how it ended, is
    kept in the session and shown after the rerun."""
    try:
        saved, summary = action()
    except Exception as exc:
        if on_error is not None:
            on_error()
        show_error(exc)
        return
    st.session_state[REPORT] = _report(saved, summary, rows)
    library.save_status(settings, saved, summary)
    st.rerun()


def _report(saved, summary, rows=None) -> list[tuple[str, str]]:
    """(kind, text) lines saying what an ingest did, failures first-class: per uploaded file
    ("file:STATE" lines), then the totals, then files of the folder that failed besides."""
    lines = [(f"file:{state}", text) for state, text in rows.report()] if rows else []
    named = {r.source for r in rows.rows} | {r.name for r in rows.rows} if rows else set()
    lines += [("warning", f"{name} was not added: {reason}.")
              for name, reason in (saved.rejected if saved else []) if name not in named]  # fmt: skip
    if summary is not None:
        counts = [len(summary.added), len(summary.updated), len(summary.deleted)]
        lines.append(
            ("success", "Index updated: {} added, {} updated, {} removed, ".format(*counts)
             + f"chunks: {summary.chunks_added} indexed.")
            if any(counts)
            else ("success", "The index is already up to date.")
        )  # fmt: skip
        lines += [("warning", f"Could not index {source}: {reason}")
                  for source, reason in summary.failed if source not in named]  # fmt: skip
    return lines


def show_report() -> None:
    for kind, text in st.session_state.pop(REPORT, []):
        if kind.startswith("file:"):
            upload_progress.show_line(kind.removeprefix("file:"), text)
        else:
            getattr(st, kind)(escape_markdown(text))


# -- settings --------------------------------------------------------------------------------
CHOSEN_MODEL = "chosen_model"  # the chat model picked in the page: settings fields to override
BACKEND_NAMES = {"huggingface": "Embedded / transformers (in docchat)", "ollama": "Ollama server",
                 "openai": "OpenAI-compatible server"}  # fmt: skip


def with_chosen_model(settings):
    """The settings with the chat model picked in the page for this session, if any (the
    engine is cached per settings, so the new model answers from the next question on)."""
    chosen = st.session_state.get(CHOSEN_MODEL)
    return settings.model_copy(update=chosen) if chosen else settings


def settings_panel(settings) -> dict:
    """The chat model (switchable here), doctor status; k, temperature and threshold for
    this session."""
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
        _model_chooser(settings)
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


def _model_chooser(settings) -> None:
    """Pick the backend and model: Ollama's pulled models are listed from the server, an
    OpenAI-compatible server is given by URL. Applied to this session, no restart."""
    from app.backends.advice import ollama_chat_models
    from app.config import DEFAULT_LLM_MODELS

    # Inline, not a popover: a popover opens below its button and, low in a long sidebar, ran off
    # the bottom of the window with "Use this model" out of reach (seen in the browser test).
    if not st.toggle("Change the chat model", key="model-menu"):
        return
    with st.container(border=True, key="model-chooser"):
        backend = st.selectbox("Backend", list(BACKEND_NAMES), format_func=BACKEND_NAMES.get,
                               index=list(BACKEND_NAMES).index(settings.llm_backend), key="pick-backend")  # fmt: skip
        update = {"llm_backend": backend}
        if backend == "ollama":
            host = st.text_input("Ollama server", value=settings.ollama_host, key="pick-ollama-host")
            pulled = ollama_chat_models(host)
            if pulled:
                update["llm_model"] = st.selectbox("Model", pulled, key="pick-ollama-model")
            else:
                st.caption(escape_markdown(f"No Ollama server with a chat model answers at {host}: start it "
                                           "(`ollama serve`) and `ollama pull llama3.2`, or type a model name."))
                update["llm_model"] = st.text_input("Model", value=DEFAULT_LLM_MODELS["ollama"], key="pick-model")
            update["ollama_host"] = host
        elif backend == "openai":
            update["openai_base_url"] = st.text_input(
                "Server URL", value=settings.openai_base_url or "", placeholder="http://localhost:8000/v1 (empty: OpenAI)",
                key="pick-openai-url",
            ).strip() or None  # fmt: skip
            update["llm_model"] = st.text_input("Model", value=DEFAULT_LLM_MODELS["openai"], key="pick-model")
        else:
            update["llm_model"] = st.text_input("Model folder or name (empty: the embedded one)",
                                                value="", key="pick-hf-model")  # fmt: skip
        if st.button("Use this model", key="use-model", type="primary"):
            st.session_state[CHOSEN_MODEL] = update
            st.rerun()
        if st.session_state.get(CHOSEN_MODEL) and st.button("Back to the configured model", key="reset-model"):
            del st.session_state[CHOSEN_MODEL]
            st.rerun()


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
