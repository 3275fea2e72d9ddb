"""Slides, OpenDocument text and e-books, each through its maintained parser.

pptx: python-pptx (a section per slide, headed "Slide N: title"; tables by rows).
odt: odfpy (sections at headings, tables by rows). epub: EbookLib, each chapter's XHTML
through the HTML loader (headed with the chapter's title from the table of contents).
"""

from __future__ import annotations

from pathlib import Path

from ingest.documents import HeadingPath, ParsedDocument, Section, UnreadableFile
from ingest.tables import table_section


def parse_pptx(path: Path) -> ParsedDocument:
    """A section per slide (text frames, then notes), tables as their own row sections."""
    import pptx

    from ingest.loaders import check_zip_bomb, stem_title

    check_zip_bomb(path, "PPTX")
    try:
        deck = pptx.Presentation(str(path))
    except Exception as exc:  # python-pptx raises KeyError, ValueError, lxml errors on broken files
        raise UnreadableFile(f"corrupt PPTX ({type(exc).__name__}: {exc})") from None
    sections = []
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
        heading = f"Slide {number}: {title}" if title else f"Slide {number}"
        lines, tables = [], []
        for shape in slide.shapes:
            if shape.has_text_frame and shape.text_frame.text.strip():
                lines.append(shape.text_frame.text.strip())
            elif getattr(shape, "has_table", False) and shape.has_table:
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                tables.append(table_section(enumerate(rows, start=1), heading))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append("Notes: " + notes)
        sections.append(Section("\n".join(lines), heading))
        sections += [t for t in tables if t]
    title = deck.core_properties.title or None
    return ParsedDocument(title or stem_title(path.name), [s for s in sections if s.text.strip() or s.rows])


def parse_odt(path: Path) -> ParsedDocument:
    """Sections at headings (text:h and its outline level); tables by rows."""
    from odf import opendocument, teletype
    from odf.namespaces import TABLENS, TEXTNS

    from ingest.loaders import check_zip_bomb, stem_title

    check_zip_bomb(path, "ODT")
    try:
        document = opendocument.load(str(path))
    except Exception as exc:  # odfpy raises zip, XML and KeyErrors on broken files
        raise UnreadableFile(f"corrupt ODT ({type(exc).__name__}: {exc})") from None
    sections, headings, lines, title = [], HeadingPath(), [], None

    def walk(element) -> None:
        nonlocal lines, title
        for child in element.childNodes:
            name = getattr(child, "qname", None)
            if name == (TEXTNS, "h"):
                text = " ".join(teletype.extractText(child).split())
                if text:
                    sections.append(Section("\n".join(lines), headings.current))
                    level = int(child.getAttribute("outlinelevel") or 1)
                    headings.enter(level, text)
                    title = title or text
                    lines = [text]
            elif name == (TEXTNS, "p"):
                text = teletype.extractText(child).strip()
                if text:
                    lines.append(text)
            elif name == (TABLENS, "table"):
                rows = [[teletype.extractText(cell).strip() for cell in row.childNodes
                         if getattr(cell, "qname", None) == (TABLENS, "table-cell")]
                        for row in _odf_rows(child, TABLENS)]
                sections.append(Section("\n".join(lines), headings.current))
                lines = []
                table = table_section(enumerate(rows, start=1), headings.current)
                if table:
                    sections.append(table)
            elif getattr(child, "childNodes", None):
                walk(child)  # lists, sections, frames

    walk(document.text)
    sections.append(Section("\n".join(lines), headings.current))
    meta_title = next((teletype.extractText(t) for t in document.meta.childNodes
                       if getattr(t, "qname", (None, None))[1] == "title"), None)
    return ParsedDocument(meta_title or title or stem_title(path.name), [s for s in sections if s.text.strip() or s.rows])


def _odf_rows(table, tablens):
    for child in table.childNodes:
        name = getattr(child, "qname", None)
        if name == (tablens, "table-row"):
            yield child
        elif name in ((tablens, "table-header-rows"), (tablens, "table-rows")):
            yield from _odf_rows(child, tablens)


def parse_epub(path: Path) -> ParsedDocument:
    """Each chapter (spine document) through the HTML loader, headed with its TOC title."""
    import ebooklib
    from ebooklib import epub

    from ingest.loaders import check_zip_bomb, parse_html, stem_title

    check_zip_bomb(path, "EPUB")
    try:
        reader = _tolerant_epub_reader()(str(path), {"ignore_ncx": False})  # epub.read_epub's two steps
        book = reader.load()
        reader.process()
    except Exception as exc:  # EbookLib raises zip, XML, KeyError and its own EpubException
        raise UnreadableFile(f"corrupt EPUB ({type(exc).__name__}: {exc})") from None
    chapter_titles = {}

    def collect(entries) -> None:
        for entry in entries:
            node, children = (entry if isinstance(entry, tuple) else (entry, []))
            href = getattr(node, "href", "") or ""
            chapter_titles.setdefault(href.split("#")[0], getattr(node, "title", "") or "")
            collect(children)

    collect(book.toc)
    sections, read = [], set()
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or item.get_name().split("#")[0] in read:
            continue  # "chapter.xhtml#part" after "chapter.xhtml": the same file, read once
        read.add(item.get_name().split("#")[0])
        chapter = parse_html(item.get_content(), item.get_name())
        name = chapter_titles.get(item.get_name()) or (chapter.title if chapter.title != stem_title(item.get_name()) else "")
        for section in chapter.sections:
            if name and section.heading and section.heading.split(" > ")[0] != name:
                section.heading = f"{name} > {section.heading}"
            elif name and not section.heading:
                section.heading = name
            sections.append(section)
    titles = book.get_metadata("DC", "title")
    return ParsedDocument((titles[0][0] if titles else "") or stem_title(path.name), sections)


def _tolerant_epub_reader():
    """EbookLib's reader, also reading manifest entries that point into a file ("a.xhtml#o8").

    Not valid EPUB, but real: Debian's live-manual-epub (2:20151217.2) lists 143 of them, and
    EbookLib refused the whole book (KeyError: no item named 'OEBPS/about-manual.xhtml#o8')."""
    from ebooklib import epub

    class Reader(epub.EpubReader):
        def read_file(self, name):
            try:
                return super().read_file(name)
            except KeyError:
                if "#" not in name:
                    raise
                return super().read_file(name.split("#", 1)[0])

    return Reader
