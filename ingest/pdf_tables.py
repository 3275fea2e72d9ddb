"""Tables inside PDFs, chunked by rows like every other table (``tables.table_section``).

pdfplumber finds ruled tables (cells drawn with lines or rectangles, as word processors and
report generators draw them) and gives their cells; a page with a table becomes its text above,
between and below the tables, and a table section per table, all keeping the page number. A
table that carries on at the top of the next page is the same table: it keeps the header of its
first part (a repeated header row is dropped), and its row numbers go on from there.

pdfplumber (over pdfminer) costs several times pypdf's text extraction per page, so only pages
whose drawn paths could rule a table are given to it (``candidate_pages``, cheap with
pypdfium2); a page of plain text never is. Tables drawn without lines are read as text, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.documents import Section
from ingest.tables import cell_text, table_section

MIN_EDGES = 3  # a ruled table of two rows and two columns has 3 horizontal and 3 vertical rules
THIN = 2.0  # points: a path this thin is a rule, not a box


@dataclass
class _Open:
    """The last table seen, which a table at the top of the next page may continue."""

    number: int  # "Table N"
    header: list[str]
    last_row: int
    page: int
    ends_page: bool  # nothing but blank space below it


def candidate_pages(path: Path) -> set[int]:
    """1-based numbers of the pages whose drawn paths could rule a table: at least ``MIN_EDGES``
    distinct horizontal and vertical edges (from the paths' bounds; pypdfium2, ~5 ms a page).
    A box drawn around a code sample (two of each) or underlined links (no vertical) are not."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    document = pdfium.PdfDocument(path)
    try:
        found = set()
        for index in range(len(document)):
            page = document[index]
            rows, columns = set(), set()
            for obj in page.get_objects(filter=[raw.FPDF_PAGEOBJ_PATH], max_depth=2):
                left, bottom, right, top = obj.get_bounds()
                if right - left > THIN:
                    rows.update({round(bottom), round(top)} if top - bottom > THIN else {round(bottom)})
                if top - bottom > THIN:
                    columns.update({round(left), round(right)} if right - left > THIN else {round(left)})
                if len(rows) >= MIN_EDGES and len(columns) >= MIN_EDGES:
                    found.add(index + 1)
                    break
            page.close()
        return found
    finally:
        document.close()


def pages_with_tables(path: Path, pages: set[int]) -> dict[int, list[Section]]:
    """For each of ``pages`` holding a table: its sections in reading order (text, table, text...)."""
    if not pages:
        return {}  # opening the file with pdfplumber alone costs a parse of its structure
    import pdfplumber

    result: dict[int, list[Section]] = {}
    last: _Open | None = None
    count = 0
    with pdfplumber.open(path) as pdf:
        for number in sorted(pages):
            page = pdf.pages[number - 1]
            try:
                found = sorted((t for t in page.find_tables() if _is_data_table(t)), key=lambda t: t.bbox[1])
                if not found:
                    last = None
                    continue
                sections, top = [], page.bbox[1]
                for position, table in enumerate(found):
                    sections.append(Section(_band_text(page, top, table.bbox[1], found), page=number))
                    rows = [[cell_text(c) for c in row] for row in table.extract()]
                    if position == 0 and last and _continues(last, rows, number, sections[-1].text):
                        rows = rows[1:] if rows[0] == last.header else rows  # a repeated header row
                        numbered = [(1, last.header)] + list(enumerate(rows, start=last.last_row + 1))
                    else:
                        count += 1
                        last = _Open(count, rows[0], 0, number, False)
                        numbered = list(enumerate(rows, start=1))
                    section = table_section(numbered, f"Table {last.number}", number)
                    if section is not None:
                        sections.append(section)
                    last.last_row, last.page, top = numbered[-1][0], number, table.bbox[3]
                sections.append(Section(_band_text(page, top, page.bbox[3], found), page=number))
                last.ends_page = not sections[-1].text.strip()
                result[number] = [s for s in sections if s.text.strip() or s.rows]
            finally:
                page.close()
    return result


def _is_data_table(table) -> bool:
    """Two rows of two cells or more: not a box drawn around a paragraph or a code sample."""
    rows = table.extract()
    return len(rows) >= 2 and sum(1 for cell in rows[0] if cell is not None) >= 2


def _continues(last: _Open, rows: list[list[str]], page: int, text_above: str) -> bool:
    """A table at the very top of the page after one that filled the previous page's end, with
    as many columns (its header repeated or not): the same table, carried over."""
    return (last.page == page - 1 and last.ends_page and not text_above.strip()
            and len(rows[0]) == len(last.header))


def _band_text(page, top: float, bottom: float, tables) -> str:
    """The page's text between two heights, without the characters inside any table."""
    x0, page_top, x1, page_bottom = page.bbox
    top, bottom = max(top, page_top), min(bottom, page_bottom)
    if bottom - top < 1:
        return ""
    boxes = [t.bbox for t in tables]

    def outside(obj) -> bool:
        if obj.get("object_type") != "char":
            return True
        cx, cy = (obj["x0"] + obj["x1"]) / 2, (obj["top"] + obj["bottom"]) / 2
        return not any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes)

    return page.crop((x0, top, x1, bottom)).filter(outside).extract_text() or ""
