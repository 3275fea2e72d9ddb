"""The Library page: every document with its type, size, pages, passages, when it was indexed
and its status (indexed, failed or skipped with the reason); add by drag and drop, open one,
re-index or remove one, re-sync the documents folder."""

from __future__ import annotations

from pathlib import PurePath

import streamlit as st

from app.errors import DocchatError
from app.ui import library, panels, resources, viewer
from app.ui.chat import show_error
from app.ui.formatting import size, when
from app.ui.sanitize import downloadable_file, escape_markdown

PASSAGES_SHOWN = 20
NOTICE = "library-notice"  # what the last action did, shown once after its rerun


def show(settings) -> None:
    st.markdown("### Library")
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.success(escape_markdown(notice), icon=":material/check:")
    try:
        store = resources.store(settings)
        documents = store.documents()
    except DocchatError:
        store, documents = None, []
    panels.upload_form(settings)
    rows = document_rows(store, documents, library.load_status(settings))
    if not rows:
        st.info("No documents yet: drop files above, or index a folder with `docchat ingest FOLDER`.",
                icon=":material/library_add:")  # fmt: skip
    else:
        indexed = sum(1 for r in rows if r["status"] == "indexed")
        st.caption(f"{indexed} documents indexed, {sum(d.chunks for d in documents)} passages"
                   + (f"; {len(rows) - indexed} not indexed" if len(rows) > indexed else ""))  # fmt: skip
        st.caption("Select a row to open, re-index or remove that document.")
        event = st.dataframe(
            rows, hide_index=True, key="library-table", on_select="rerun", selection_mode="single-row",
            column_config={
                "document": st.column_config.TextColumn("Document", width="large"),
                "type": "Type", "size": "Size", "pages": "Pages", "passages": "Passages",
                "indexed": "Indexed", "status": "Status",
                "reason": st.column_config.TextColumn("Why not indexed", width="large"),
                "folder": "Folder",
            },
        )  # fmt: skip
        picked = [rows[i] for i in event.selection.rows if i < len(rows)]
        by_key = {(d.root, d.source): d for d in documents}
        if picked and (picked[0]["folder"], picked[0]["document"]) in by_key:
            _document_actions(settings, store, by_key[(picked[0]["folder"], picked[0]["document"])], documents)
    if st.button("Re-sync the documents folder", icon=":material/sync:", key="resync",
                 help=escape_markdown(f"Index new and changed files in {settings.docs_path}, drop removed ones.")):
        panels.resync(settings)


def document_rows(store, documents: list, status: dict[str, dict]) -> list[dict]:
    """One row per document: indexed ones from the index, then those the last ingest left out."""
    rows = []
    for d in documents:
        rows.append({
            "document": d.source, "type": _kind(d.source), "size": size(d.size),
            "pages": _pages(store, d), "passages": d.chunks, "indexed": when(d.ingested_at),
            "status": "indexed", "reason": "", "folder": d.root,
        })  # fmt: skip
    listed = {d.source for d in documents}
    for source, entry in sorted(status.items()):
        if source not in listed:
            rows.append({
                "document": source, "type": _kind(source), "size": "", "pages": "", "passages": 0, "indexed": "",
                "status": entry.get("status", "failed"), "reason": entry.get("reason", ""), "folder": "",
            })  # fmt: skip
    return rows


def _kind(source: str) -> str:
    return PurePath(source).suffix.lstrip(".").upper() or "?"


def _pages(store, doc) -> str:
    """A PDF's page count as far as its passages tell (the highest page cited); others: blank."""
    if not doc.source.lower().endswith(".pdf") or store is None:
        return ""
    key = ("pages", doc.root, doc.source, doc.ingested_at)
    cache = st.session_state.setdefault("_pages", {})
    if key not in cache:
        pages = [c.page for c in store.chunks_of(doc.source, doc.root) if c.page is not None]
        cache[key] = str(max(pages)) if pages else ""
    return cache[key]


def _document_actions(settings, store, doc, documents: list) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"**{escape_markdown(doc.source)}**")
        if st.button("Open", key="open-doc", icon=":material/open_in_new:"):
            document_dialog(store, doc, {(d.root, d.source) for d in documents})
        if st.button("Re-index", key="reindex-doc", icon=":material/refresh:",
                     help="Read this document again and replace its passages (after a parser or setting change)."):
            _reindex(settings, doc)
        with st.popover("Remove", icon=":material/delete:", key="remove-doc-menu"):
            owned = PurePath(doc.root) == PurePath(settings.docs_path)
            st.markdown(escape_markdown(
                f"Remove {doc.source} from the index" + (" and delete the file?" if owned else "? The file stays.")
            ))  # fmt: skip
            if st.button("Yes, remove", key="remove-doc", type="primary"):
                _remove(settings, doc)


def _reindex(settings, doc) -> None:
    try:
        with st.spinner(escape_markdown(f"Reading {doc.source} again…")):
            summary = library.reindex(settings, doc.source, doc.root, embedder=resources.embedder(settings))
    except Exception as exc:
        show_error(exc)
        return
    if summary.failed:
        st.error(escape_markdown(f"{doc.source} could not be read again: {summary.failed[0][1]}. Its passages are kept."))
        return
    # Said after the rerun that shows the new passages (a toast could vanish with the rerun).
    st.session_state[NOTICE] = (f"{doc.source}: re-indexed, {summary.chunks_added} passages "
                                f"({summary.chunks_embedded} embedded anew).")
    st.rerun()


def _remove(settings, doc) -> None:
    try:
        deleted = library.remove(settings, doc.source, doc.root)
    except Exception as exc:
        show_error(exc)
        return
    what = "removed from the index and its file deleted" if deleted else "removed from the index"
    st.toast(escape_markdown(f"{doc.source}: {what}."))
    st.rerun()


@st.dialog("Document", width="large")
def document_dialog(store, doc, indexed_files) -> None:
    st.markdown(f"**{escape_markdown(doc.title or doc.source)}**")
    st.caption(escape_markdown(f"{doc.root}/{doc.source} · {size(doc.size)} · {doc.chunks} passages · "
                               f"indexed {when(doc.ingested_at)}"))  # fmt: skip
    from app.engine.answer import Source

    chunks = store.chunks_of(doc.source, doc.root)
    if doc.source.lower().endswith(".pdf"):
        path = downloadable_file(doc.root, doc.source, indexed_files)
        png = viewer.render_pdf_page(path, 1) if path else None
        if png:
            st.image(png, caption=f"{doc.source}, page 1", width=viewer.PDF_WIDTH)
    for hit in chunks[:PASSAGES_SHOWN]:
        source = Source.from_hit(0, hit)
        where = f"page {source.page}" if source.page is not None else (source.heading or "")
        with st.expander(escape_markdown(where or "passage")):
            st.text(hit.text)
    if len(chunks) > PASSAGES_SHOWN:
        st.caption(f"… and {len(chunks) - PASSAGES_SHOWN} more passages.")
