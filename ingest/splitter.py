"""Sections to chunks: split within each section (so chunks follow headings and pages),
then by paragraphs, lines and sentences to fit ``DOCCHAT_CHUNK_SIZE`` / ``CHUNK_OVERLAP``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ingest.documents import ParsedDocument, Section

MIN_CHUNK_CHARS = 50  # smaller fragments (a lone heading, a page number) join a neighbour
# Table chunks are kept short: a vector of ten rows matches a question about one of them
# poorly. A 120-row sheet, "how many blue ceramic teapots ... Lyon?": the right chunk scored
# 0.33 (third) at 1,000 characters and 0.53 (first, above the answer threshold) at 400.
TABLE_CHUNK_CHARS = 400


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
    pieces: list[Section] = []
    prose: list[Section] = []
    for section in document.sections:
        if section.rows:
            pieces += _merge_tiny(prose) + split_table(section, min(splitter._chunk_size, TABLE_CHUNK_CHARS),
                                                       splitter._chunk_size)
            prose = []
        else:
            prose += [Section(text, section.heading, section.page, ocr=section.ocr)
                      for text in splitter.split_text(section.text)]
    pieces += _merge_tiny(prose)
    chunks = []
    for position, piece in enumerate(pieces):
        embed_text = _with_context(document.title, piece.heading, piece.text) if embed_headings else piece.text
        metadata = {
            "source": source, "root": root, "title": document.title, "page": piece.page,
            "heading": piece.heading, "position": position,
            "content_hash": hashlib.sha256(embed_text.encode()).hexdigest()[:32],
        }
        if piece.ocr:
            metadata["ocr"] = True
        chunks.append(Chunk(piece.text, embed_text, metadata))
    return chunks


def split_table(table: Section, chunk_size: int, long_row_chars: int | None = None) -> list[Section]:
    """Rows packed into chunks of at most ``chunk_size`` characters, each starting with the
    header line, each headed with its row range ("Sheet1, rows 2-14"): a chunk alone says which
    column a value is in and which row it came from. A row longer than that is a chunk of its
    own, cut every ``long_row_chars`` (default ``chunk_size``)."""
    header, budget = table.text, max(chunk_size - len(table.text) - 1, chunk_size // 2)
    cut = max((long_row_chars or chunk_size) - len(header) - 1, budget)
    groups: list[list[tuple[int, str]]] = [[]]
    used = 0
    for number, line in table.rows or []:
        for part in [line[i:i + cut] for i in range(0, len(line), cut)] or [""]:
            if groups[-1] and used + len(part) + 1 > budget:
                groups.append([])
                used = 0
            groups[-1].append((number, part))
            used += len(part) + 1
    pieces = []
    for group in filter(None, groups):
        first, last = group[0][0], group[-1][0]
        where = f"row {first}" if first == last else f"rows {first}\u2013{last}"
        heading = f"{table.heading}, {where}" if table.heading else where
        text = "\n".join([header] + [line for _, line in group])
        pieces.append(Section(text, heading, table.page, ocr=table.ocr))
    return pieces


def _merge_tiny(pieces: list[Section]) -> list[Section]:
    """Join fragments shorter than MIN_CHUNK_CHARS to the next piece on the same page (else the previous)."""
    merged: list[Section] = []
    carry: Section | None = None
    for piece in pieces:
        piece = piece if piece.text.strip() else None
        if piece is None:
            continue
        if carry is not None and carry.page == piece.page:
            piece = Section(carry.text + "\n" + piece.text, piece.heading, piece.page, ocr=piece.ocr or carry.ocr)
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
