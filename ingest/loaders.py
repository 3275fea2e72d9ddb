"""One parser per file format: a file in, a ``ParsedDocument`` (title + sections) out.

Text formats are parsed here; the others by maintained parsers in their own modules
(``tables``: csv, xlsx, ods; ``office``: pptx, odt, epub; ``mail``: eml, mbox; ``ocr``: images
and the scanned pages of PDFs). ``SUPPORTED`` maps each suffix to its parser; the README's
format table follows it.

Every format is parsed in a worker process under a time and memory limit (see ``isolation``):
PDF and DOCX parsers can be driven into huge memory or time by a crafted file, and a text
format's parser is only as safe as its slowest regular expression. The text parsers here are
also written to be linear (no nested quantifiers that can backtrack), so the limit is a
backstop, not the plan.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from pathlib import Path

from ingest import ocr, structured, tables
from ingest.documents import HeadingPath, ParsedDocument, Section, UnreadableFile

TEXT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".rst": "rst",
                 ".html": "html", ".htm": "html", ".xhtml": "html", ".csv": "csv",
                 ".json": "json", ".yaml": "yaml", ".yml": "yaml",
                 **{suffix: "code" for suffix in structured.CODE_LANGUAGES}}
ISOLATED_SUFFIXES = {".pdf": "pdf", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".ods": "ods",
                     ".odt": "odt", ".epub": "epub", ".eml": "eml", ".mbox": "mbox",
                     ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image"}
SUPPORTED = {**TEXT_SUFFIXES, **ISOLATED_SUFFIXES}

# A DOCX (like every Office, OpenDocument and EPUB file) is a zip: refuse archives that would
# inflate far beyond their size (zip bombs).
# Real documents' XML compresses 5-20x (images not at all); python-docx needs tens of seconds
# for ~10 MB of XML, so an archive inflating more than 50x to over 4 MB is refused up front
# rather than costing a parse timeout on every sync (a 61 KB file inflating to 9.5 MB is 155x).
MAX_DOCX_UNCOMPRESSED = 500 * 1024 * 1024
MAX_DOCX_RATIO = 50
MAX_DOCX_RATIO_FLOOR = 4 << 20  # below this many inflated bytes any ratio is cheap to parse
MAX_DOCX_ENTRIES = 10_000
# Binary sniffing over the first bytes: text has (almost) no control characters but tab,
# newlines, form feed and escape; random or binary data has ~11 % of them.
SNIFF_BYTES = 8192
MAX_CONTROL_SHARE = 0.05
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b\x08")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # UTF-32 LE starts like UTF-16 LE
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def format_of(path: Path) -> str | None:
    return SUPPORTED.get(path.suffix.lower())


def parse_bytes(kind: str, data: bytes, name: str, chunk_size: int = 1000) -> ParsedDocument:
    """Parse a text-like format (markdown, text, rst, html, csv, json, yaml, code) from its bytes."""
    if kind == "html":
        if _bom_encoding(data):
            return parse_html(decode_text(data).encode("utf-8"), name)
        refuse_binary(data)
        return parse_html(data, name)
    text = decode_text(data)
    if kind == "code":
        return structured.parse_code(text, name, chunk_size)
    return {"markdown": parse_markdown, "text": parse_text, "rst": parse_rst, "csv": tables.parse_csv,
            "json": structured.parse_json, "yaml": structured.parse_yaml}[kind](text, name)


def _bom_encoding(data: bytes) -> str | None:
    return next((encoding for bom, encoding in _BOMS if data.startswith(bom)), None)


def refuse_binary(data: bytes) -> None:
    """``UnreadableFile`` for bytes that are not text: NUL bytes, or too many control characters."""
    head = data[:SNIFF_BYTES]
    if b"\x00" in head:
        raise UnreadableFile("binary content (NUL bytes), not text: wrong file extension?")
    controls = sum(1 for byte in head if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    if head and controls / len(head) > MAX_CONTROL_SHARE:
        raise UnreadableFile(f"binary content ({controls / len(head):.0%} control characters), not text: "
                             "wrong file extension?")


def decode_text(data: bytes) -> str:
    """Bytes to text: a BOM's encoding, UTF-8 when valid, else charset detection; binary is refused."""
    encoding = _bom_encoding(data)
    if encoding:  # UTF-16/32 text is full of NUL bytes: decode before sniffing for binary
        try:
            return data.decode(encoding)
        except UnicodeDecodeError as exc:
            raise UnreadableFile(f"starts with a {encoding.upper()} byte order mark but is not {encoding.upper()} ({exc.reason})") from None
    refuse_binary(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    results = from_bytes(data)
    best = results.best()
    if best is None:
        raise UnreadableFile("unknown text encoding or binary content")
    # Short texts fit several code pages equally well; the most common one (Windows-1252) wins ties.
    tied = [m for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    return str(next((m for m in tied if m.encoding in ("cp1252", "latin_1")), best))


def stem_title(name: str) -> str:
    """A readable title from a file name, for documents that do not state one."""
    return Path(name).stem.replace("_", " ").replace("-", " ").strip() or name


# -- plain text, Markdown, reStructuredText ------------------------------------------------
def parse_text(text: str, name: str) -> ParsedDocument:
    return ParsedDocument(stem_title(name), [Section(text)])


# Linear by construction: the old r"^(#{1,6})\s+(.+?)\s*#*\s*$" backtracked super-quadratically
# on "# a" + 2,000 spaces + "b" (150 s). The heading's end is now trimmed with str methods.
_ATX = re.compile(r"(#{1,6})[ \t]+(\S.*)")
_FENCE = re.compile(r"[ \t]*(```|~~~)")


def atx_heading(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line ("## Setup ##"), else None."""
    match = _ATX.match(line)
    if not match:
        return None
    text = match.group(2).rstrip()
    closed = text.rstrip("#")
    if closed != text and (not closed or closed[-1] in " \t"):  # a closing "##" run, not "C#"
        text = closed.rstrip()
    return (len(match.group(1)), text) if text else None


def parse_markdown(text: str, name: str) -> ParsedDocument:
    """Sections at ATX headings (``#`` .. ``######``), ignoring ``#`` lines inside code fences."""
    sections, path, lines, title = [], HeadingPath(), [], None
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading_line = None if in_fence else atx_heading(line)
        if heading_line:
            sections.append(Section("\n".join(lines), path.current))
            level, heading = heading_line
            title = title or (heading if level == 1 else None)
            path.enter(level, heading)
            lines = [line]
        else:
            lines.append(line)
    sections.append(Section("\n".join(lines), path.current))
    return ParsedDocument(title or stem_title(name), [s for s in sections if s.text.strip()])


_RST_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")


def parse_rst(text: str, name: str) -> ParsedDocument:
    """Sections at underlined (optionally overlined) titles; levels in order of first use."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    sections, path, body, title = [], HeadingPath(), [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        over = bool(_RST_ADORNMENT.match(line)) and i + 2 < len(lines) and lines[i + 2] == line
        under = i + 1 < len(lines) and line.strip() and not _RST_ADORNMENT.match(line) and \
            _RST_ADORNMENT.match(lines[i + 1]) and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        if over or under:
            heading = (lines[i + 1] if over else line).strip()
            style = ((lines[i + 2] if over else lines[i + 1])[0], over)
            if style not in styles:
                styles.append(style)
            sections.append(Section("\n".join(body), path.current))
            path.enter(styles.index(style) + 1, heading)
            title = title or heading
            body = [heading]
            i += 3 if over else 2
            continue
        body.append(line)
        i += 1
    sections.append(Section("\n".join(body), path.current))
    return ParsedDocument(title or stem_title(name), [s for s in sections if s.text.strip()])


# -- HTML -----------------------------------------------------------------------------------
_DROP_TAGS = ("script", "style", "nav", "header", "footer", "noscript", "template", "svg", "iframe", "form", "head")
# "headerlink": the permalink mark (¶) Sphinx puts after every heading and term.
_DROP_CLASSES = ("navheader", "navfooter", "navbar", "sidebar", "breadcrumb", "toc-nav", "headerlink")
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
_BLOCKS = {"p", "div", "li", "ul", "ol", "pre", "tr", "table", "br", "h5", "h6", "dt", "dd", "dl",
           "blockquote", "section", "article", "main", "figure", "figcaption", "hr", "td", "th"}
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")
_ANY_SPACE = re.compile(r"\s+")


def parse_html(data: bytes, name: str) -> ParsedDocument:
    """Main text only: navigation, headers, footers, scripts and styles dropped; sections at h1-h4."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.fromstring(data)
    except (etree.ParserError, ValueError) as exc:
        raise UnreadableFile(f"not parseable as HTML ({exc})") from None
    title_el = root.find(".//title")
    title = _clean(title_el.text_content()) if title_el is not None else ""
    for el in list(root.iter(*_DROP_TAGS)):
        el.drop_tree()
    for el in list(root.iter()):
        classes = (el.get("class") or "").split() if isinstance(el.tag, str) else ()
        if any(c in _DROP_CLASSES for c in classes) or el.get("role") == "navigation":
            el.drop_tree()
    main = next(iter(root.xpath("//main | //*[@role='main'] | //article")), None)
    walker = _HtmlSections()
    walker.walk(main if main is not None else root)
    sections = walker.finish()
    if not title:
        title = walker.first_heading or stem_title(name)
    return ParsedDocument(title, sections)


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _own_rows(table):
    """The rows of this table, not of tables nested in its cells."""
    for child in table:
        if child.tag == "tr":
            yield child
        elif child.tag in ("thead", "tbody", "tfoot"):
            yield from (row for row in child if row.tag == "tr")


def _is_data_table(table) -> bool:
    """A table of data (two rows of two cells or more), not a layout table holding a page's blocks."""
    rows = list(_own_rows(table))
    return len(rows) >= 2 and all(len(row) >= 2 for row in rows[:2]) and table.find(".//table") is None


class _HtmlSections:
    """Walks the tree once, collecting text and starting a new section at each h1-h4."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.parts: list[str] = []
        self.path = HeadingPath()
        self.first_heading: str | None = None

    def walk(self, el, in_pre: bool = False) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""
        level = _HEADINGS.get(tag)
        if tag == "table" and _is_data_table(el):
            self._flush()
            rows = [[_clean(cell.text_content()) for cell in row if cell.tag in ("td", "th")] for row in _own_rows(el)]
            table = tables.table_section(enumerate(rows, start=1), self.path.current)
            if table:
                self.sections.append(table)
        elif level:
            heading = _clean(el.text_content())
            if heading:
                self._flush()
                self.path.enter(level, heading)
                self.first_heading = self.first_heading or heading
                self.parts.append(heading + "\n")
        elif tag:  # comments and processing instructions have no text of their own
            block, inner_pre = tag in _BLOCKS, in_pre or tag == "pre"
            if block:
                self.parts.append("\n")
            self._text(el.text, inner_pre)
            for child in el:
                self.walk(child, inner_pre)
            if block:
                self.parts.append("\n")
        self._text(el.tail, in_pre)

    def _text(self, text: str | None, in_pre: bool) -> None:
        # Source line breaks mean nothing outside <pre>; inside it they are the layout.
        if text:
            self.parts.append(text if in_pre else _ANY_SPACE.sub(" ", text))

    def _flush(self) -> None:
        lines = (_clean(line) for line in "".join(self.parts).splitlines())
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        if text:
            self.sections.append(Section(text, self.path.current))
        self.parts = []

    def finish(self) -> list[Section]:
        self._flush()
        return self.sections


# -- PDF and DOCX (run inside the isolated child) ---------------------------------------------
def parse_pdf(path: Path, options: ocr.OcrOptions | None = None) -> ParsedDocument:
    """One section per page, with its 1-based page number; pages with no text layer through OCR."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("encrypted PDF (password protected): save an unprotected copy to ingest it")
        pages = [Section(page.extract_text() or "", page=n) for n, page in enumerate(reader.pages, start=1)]
        meta_title = (reader.metadata or {}).get("/Title") if reader.metadata else None
    except UnreadableFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnreadableFile(f"corrupt or unsupported PDF ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pypdf raises many kinds of errors on broken files
        if "crypt" in str(exc).lower():
            raise UnreadableFile("encrypted PDF that cannot be opened") from None
        raise UnreadableFile(f"corrupt PDF ({type(exc).__name__}: {exc})") from None
    title = str(meta_title).strip() if meta_title else stem_title(path.name)
    notes: list[str] = []
    scanned = [(p.page, ocr.pdf_page_renderer(path, p.page - 1)) for p in pages if not p.text.strip()]
    read = {s.page: [s] for s in ocr.ocr_pages(scanned, options or ocr.OcrOptions(), notes)}
    read.update(_pdf_tables(path, {p.page for p in pages if p.text.strip()}, notes))
    sections = [s for p in pages for s in read.get(p.page, [p])]
    return ParsedDocument(title, [s for s in sections if s.text.strip() or s.rows], notes)


def _pdf_tables(path: Path, text_pages: set[int], notes: list[str]) -> dict[int, list[Section]]:
    """The sections of the pages holding tables (``pdf_tables``); on any failure, none: those
    pages keep pypdf's text, and a note says why."""
    from ingest import pdf_tables

    try:
        return pdf_tables.pages_with_tables(path, pdf_tables.candidate_pages(path) & text_pages)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # pdfplumber and pdfium raise many kinds of errors on odd files
        notes.append(f"tables not read as tables ({type(exc).__name__}: {exc}); their text is kept")
        return {}


def check_zip_bomb(path: Path, kind: str = "DOCX") -> None:
    """Refuse a zip-based file whose declared uncompressed size or ratio is out of all proportion."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFile(f"corrupt {kind} (not a valid zip archive: {exc})") from None
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos) or 1
    if len(infos) > MAX_DOCX_ENTRIES or total > MAX_DOCX_UNCOMPRESSED or \
            (total > MAX_DOCX_RATIO_FLOOR and total / packed > MAX_DOCX_RATIO):
        raise UnreadableFile(
            f"refused as a possible zip bomb: {len(infos)} entries inflating {packed:,} bytes to {total:,} bytes"
        )


def parse_docx(path: Path) -> ParsedDocument:
    """Sections at paragraphs styled Title / Heading N; tables as ' | '-joined rows."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip_bomb(path)
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors on broken files
        raise UnreadableFile(f"corrupt DOCX ({type(exc).__name__}: {exc})") from None
    sections, path_, lines, title = [], HeadingPath(), [], document.core_properties.title or None
    for child in document.element.body.iterchildren():
        if child.tag.endswith("}p"):
            paragraph = Paragraph(child, document)
            text = paragraph.text.strip()
            level = _docx_heading_level(paragraph.style.name if paragraph.style is not None else "")
            if level is not None and text:
                sections.append(Section("\n".join(lines), path_.current))
                path_.enter(level, text)
                title = title or text
                lines = [text]
            elif text:
                lines.append(text)
        elif child.tag.endswith("}tbl"):
            rows = [[cell.text.strip() for cell in row.cells] for row in Table(child, document).rows]
            table = tables.table_section(enumerate(rows, start=1), path_.current)
            if table:
                sections.append(Section("\n".join(lines), path_.current))
                sections.append(table)
                lines = []
    sections.append(Section("\n".join(lines), path_.current))
    return ParsedDocument(title or stem_title(path.name), [s for s in sections if s.text.strip() or s.rows])


def _docx_heading_level(style: str) -> int | None:
    if style == "Title":
        return 0
    match = re.match(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def parse_file(kind: str, path: Path, options: dict | None = None) -> ParsedDocument:
    """Parse one file of any supported format (run inside the isolated child).

    ``options``: {"ocr": OcrOptions as a dict, "chunk_size": n} from the settings; {"mail_depth": n}
    inside mail.
    """
    from ingest import mail, office

    options = options or {}
    ocr_options = ocr.OcrOptions.from_json(options.get("ocr"))
    parsers = {
        "pdf": lambda: parse_pdf(path, ocr_options), "docx": lambda: parse_docx(path),
        "image": lambda: ocr.parse_image(path, ocr_options),
        "xlsx": lambda: tables.parse_xlsx(path), "ods": lambda: tables.parse_ods(path),
        "pptx": lambda: office.parse_pptx(path), "odt": lambda: office.parse_odt(path),
        "epub": lambda: office.parse_epub(path),
        "eml": lambda: mail.parse_eml(path, options), "mbox": lambda: mail.parse_mbox(path, options),
    }
    if kind in parsers:
        return parsers[kind]()
    return parse_bytes(kind, path.read_bytes(), path.name, int(options.get("chunk_size", 1000)))
