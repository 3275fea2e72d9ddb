"""Sections to chunks: split within each section (so chunks follow headings and pages),
then by paragraphs, lines and sentences to fit ``DOCCHAT_CHUNK_SIZE`` / ``CHUNK_OVERLAP``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ingest.documents import ParsedDocument, Section

MIN_CHUNK_CHARS = 50  # smaller fragments (a lone heading, a page number) join a neighbour


@dataclass
class Chunk:
    """A piece of a document: the text shown to the model, the text embedded, and metadata."""

    text: str
    embed_text: str
    metadata: dict

    @property
    def content_hash(self) -> str:
        return self.metadata["content_hash"]


def make_splitter(chunk_size: int, chunk_overlap: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size, chunk_overlap=chunk_overlap, separators=["\n\n", "\n", ". ", " ", ""],
        keep_separator="end",
    )


def split_document(document: ParsedDocument, *, root: str, source: str, splitter, embed_headings: bool) -> list[Chunk]:
    """The chunks of one document, in file order, with their metadata."""
    pieces = [Section(text, s.heading, s.page) for s in document.sections for text in splitter.split_text(s.text)]
    chunks = []
    for position, piece in enumerate(_merge_tiny(pieces)):
        embed_text = _with_context(document.title, piece.heading, piece.text) if embed_headings else piece.text
        metadata = {
            "source": source, "root": root, "title": document.title, "page": piece.page,
            "heading": piece.heading, "position": position,
            "content_hash": hashlib.sha256(embed_text.encode()).hexdigest()[:32],
        }
        chunks.append(Chunk(piece.text, embed_text, metadata))
    return chunks


def _merge_tiny(pieces: list[Section]) -> list[Section]:
    """Join fragments shorter than MIN_CHUNK_CHARS to the next piece on the same page (else the previous)."""
    merged: list[Section] = []
    carry: Section | None = None
    for piece in pieces:
        piece = piece if piece.text.strip() else None
        if piece is None:
            continue
        if carry is not None and carry.page == piece.page:
            piece = Section(carry.text + "\n" + piece.text, piece.heading, piece.page)
        elif carry is not None:
            merged.append(carry)
        carry = None
        if len(piece.text.strip()) < MIN_CHUNK_CHARS:
            carry = piece
        else:
            merged.append(piece)
    if carry is not None:
        if merged and merged[-1].page == carry.page:
            last = merged[-1]
            merged[-1] = Section(last.text + "\n" + carry.text, last.heading, last.page)
        else:
            merged.append(carry)
    return merged


def _with_context(title: str, heading: str | None, text: str) -> str:
    """'Title > Heading path' on the first line, so a chunk's vector knows where it sits."""
    if not heading:
        return f"{title}\n{text}"
    context = heading if heading.split(" > ")[0] == title else f"{title} > {heading}"
    return f"{context}\n{text}"
