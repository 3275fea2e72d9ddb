"""The source viewer: a cited passage in full, with the passages around it and the sentences
that support the answer highlighted; for a PDF, the cited page itself, rendered here.

Everything is read from the live index and the document's own file on this machine (no
external service); a file is only opened when the index lists it (``downloadable_file``).
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

import streamlit as st

from app.ui.sanitize import downloadable_file, escape_markdown, highlighted

PDF_RENDER_SCALE = 1.5  # 108 dpi: readable, and a page stays a few hundred KB
PDF_WIDTH = 760  # pixels shown: a page is readable without filling a wide screen


@dataclass
class Passage:
    """The cited chunk and its neighbours in file order (``before``/``after`` may be None)."""

    text: str
    before: str | None = None
    after: str | None = None
    position: int | None = None  # 0-based place of the chunk in its file
    count: int | None = None  # chunks in the file


def find_passage(store, source) -> Passage:
    """The cited chunk in the index (by id, else by its text), with its neighbours.

    A stored answer keeps only a snippet of each source; the index still has the whole
    chunk while the document is indexed. When it is not (removed, re-chunked), the snippet.
    """
    from app.engine.answer import snippet

    fallback = Passage(source.text or source.snippet)
    if store is None:
        return fallback
    try:
        chunks = store.chunks_of(source.source, source.root or None)
    except Exception:  # an index being replaced: the snippet is still worth showing
        return fallback
    for i, hit in enumerate(chunks):
        same = hit.chunk_id == source.chunk_id if source.chunk_id is not None else (
            hit.text == source.text or snippet(hit.text) == source.snippet
        )
        if same:
            return Passage(
                hit.text,
                chunks[i - 1].text if i > 0 else None,
                chunks[i + 1].text if i + 1 < len(chunks) else None,
                i, len(chunks),
            )  # fmt: skip
    return fallback


def evidence_spans(text: str, evidence) -> list[tuple[int, int]]:
    """Where each supporting sentence stands in ``text``: its saved offsets if they still
    match, else where the sentence is found."""
    spans = []
    for e in evidence:
        if text[e.start:e.end] == e.text:
            spans.append((e.start, e.end))
        elif (at := text.find(e.text)) >= 0:
            spans.append((at, at + len(e.text)))
    return sorted(set(spans))


def render_pdf_page(path, page: int, marks: list[str] = ()) -> bytes | None:
    """The PDF's ``page`` (1-based) as PNG bytes with the ``marks`` (sentences) highlighted
    where they stand on it, or None when it cannot be rendered."""
    try:
        import io

        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(str(path))
        try:
            if not 1 <= page <= len(pdf):
                return None
            sheet = pdf[page - 1]
            image = sheet.render(scale=PDF_RENDER_SCALE).to_pil().convert("RGB")
            boxes = _boxes(sheet, marks)
        finally:
            pdf.close()
        _highlight(image, boxes)
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
    except Exception:  # a damaged or encrypted file: the passage text is still shown
        return None


def _boxes(sheet, marks) -> list[tuple[float, float, float, float]]:
    """Where the marks' lines are on the page, in image pixels (left, top, right, bottom).

    pdfium searches one line at a time (the page text breaks lines), so each line of a
    sentence is looked up on its own."""
    text_page = sheet.get_textpage()
    height = sheet.get_height()
    boxes = []
    for mark in marks:
        for line in (part.strip() for part in mark.splitlines()):
            if len(line) < 4:
                continue
            found = text_page.search(line, match_case=True).get_next()
            if not found:
                continue
            start, count = found
            for i in range(text_page.count_rects(start, count)):
                left, bottom, right, top = text_page.get_rect(i)
                boxes.append(tuple(v * PDF_RENDER_SCALE for v in (left, height - top, right, height - bottom)))
    return boxes


def _highlight(image, boxes) -> None:
    from PIL import ImageDraw

    layer = ImageDraw.Draw(image, "RGBA")
    for left, top, right, bottom in boxes:
        layer.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(255, 170, 0, 90))


def show_source(source, evidence, *, store, indexed_files: set[tuple[str, str]], key: str) -> None:
    """The viewer's body (the dialog and the tests call this)."""
    where = [f"Folder: {source.root}"]
    if source.page is not None:
        where.append(f"page {source.page}")
    if source.heading:
        where.append(f"section: {source.heading}")
    where.append(f"relevance {source.score:.2f}")
    st.caption(escape_markdown(" · ".join(where)))
    path = downloadable_file(source.root, source.source, indexed_files)
    if path is not None and path.suffix.lower() == ".pdf" and source.page is not None:
        png = render_pdf_page(path, int(source.page), [e.text for e in evidence])  # the cited page first
        if png is not None:
            st.image(png, caption=f"{source.source}, page {source.page}", width=PDF_WIDTH)
    passage = find_passage(store, source)
    if passage.position is not None:
        st.caption(f"Passage {passage.position + 1} of {passage.count} in this document")
    if passage.before:
        st.caption("Before")
        st.text(_tail(passage.before))
    with st.container(border=True):
        spans = evidence_spans(passage.text, evidence)
        st.markdown(highlighted(passage.text, spans))
        if evidence and not spans:  # the document changed since: quote the sentences
            for e in evidence:
                st.markdown(":orange-background[" + escape_markdown(" ".join(e.text.split())) + "]")
    if passage.after:
        st.caption("After")
        st.text(_head(passage.after))
    if path is not None:
        st.download_button(
            "Download the file", data=path.read_bytes, file_name=path.name,
            mime=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            key=f"dl-{key}", on_click="ignore", icon=":material/download:",
        )  # fmt: skip


@st.dialog("Source", width="large")
def source_dialog(source, evidence, store, indexed_files, key) -> None:
    st.markdown(f"**[{source.n}] {escape_markdown(source.label())}**")
    show_source(source, evidence, store=store, indexed_files=indexed_files, key=key)


NEIGHBOUR_CHARS = 600


def _tail(text: str) -> str:
    return text if len(text) <= NEIGHBOUR_CHARS else "…" + text[-NEIGHBOUR_CHARS:]


def _head(text: str) -> str:
    return text if len(text) <= NEIGHBOUR_CHARS else text[:NEIGHBOUR_CHARS] + "…"
