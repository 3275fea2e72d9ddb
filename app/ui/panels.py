"""Panels shared by the pages: adding documents (upload, ingest with progress, what it did)
and the settings. Each reads its widgets, calls one function of the ingest or the engine,
and returns what the page needs."""

from __future__ import annotations

import streamlit as st

from app.ui import library, resources
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
    """Save and index files the browser sent (the upload form, or the question box)."""
    uploads = [Upload(f.name, f.getvalue()) for f in files]
    run_ingest(settings, lambda progress: library.add_uploads(
        settings, uploads, embedder=resources.embedder(settings), progress=progress
    ))  # fmt: skip


def resync(settings) -> None:
    run_ingest(settings, lambda progress: (None, library.sync_folder(
        settings, embedder=resources.embedder(settings), progress=progress
    )))  # fmt: skip


def run_ingest(settings, action) -> None:
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
    library.save_status(settings, saved, summary)
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


def show_report() -> None:
    for kind, text in st.session_state.pop(REPORT, []):
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

    with st.popover("Change the chat model", icon=":material/swap_horiz:", key="model-menu"):
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
