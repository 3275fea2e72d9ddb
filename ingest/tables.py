"""Tables: CSV, spreadsheets (xlsx, ods) and the header-plus-rows form every table takes.

A table becomes one ``Section`` per sheet whose rows keep their row numbers as the
spreadsheet shows them (the header is row 1 when it is the first line), so the splitter can
put the header in every chunk and a citation can say "Sheet1, rows 40-52".
"""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Iterable

from ingest.documents import ParsedDocument, Section, UnreadableFile


def table_section(rows: Iterable[tuple[int, list]], heading: str | None = None, page: int | None = None) -> Section | None:
    """A table section from (row number, cells) in order; the first row with any value is the header.

    Each row reads "row 7: name: Petrel; length: 11 m", every value labelled with its column.
    """
    header: list[str] | None = None
    lines: list[tuple[int, str]] = []
    for number, cells in rows:
        values = [cell_text(c) for c in cells]
        if not any(values):
            continue
        if header is None:
            header = [v or f"column {i + 1}" for i, v in enumerate(values)]
            continue
        names = header + [f"column {i + 1}" for i in range(len(header), len(values))]
        pairs = [f"{name}: {value}" for name, value in zip(names, values) if value]
        lines.append((number, f"row {number}: " + "; ".join(pairs)))
    if header is None:
        return None
    return Section(" | ".join(header), heading, page, rows=lines or [(1, "(no rows under the header)")])


def cell_text(value) -> str:
    """A cell as people read it: 42 not 42.0, dates as ISO, whitespace collapsed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def parse_csv(text: str, name: str) -> ParsedDocument:
    """One table: the header line, then every row with its line number."""
    from ingest.loaders import stem_title

    # The default 128 KB field limit turned one long cell into a failed file; the file size
    # limit (DOCCHAT_MAX_FILE_MB) already bounds every field.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        section = table_section(enumerate(csv.reader(io.StringIO(text), dialect), start=1))
    except csv.Error as exc:
        raise UnreadableFile(f"malformed CSV ({exc})") from None
    return ParsedDocument(stem_title(name), [section] if section else [])


def parse_xlsx(path: Path) -> ParsedDocument:
    """A table per worksheet (openpyxl, cached values of formulas), headed with the sheet name."""
    import openpyxl

    from ingest.loaders import check_zip_bomb, stem_title

    check_zip_bomb(path, "XLSX")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises KeyError, InvalidFileException, lxml errors on broken files
        raise UnreadableFile(f"corrupt XLSX ({type(exc).__name__}: {exc})") from None
    try:
        sections = [table_section(enumerate(sheet.iter_rows(values_only=True), start=1), sheet.title)
                    for sheet in workbook.worksheets]
        title = workbook.properties.title
    finally:
        workbook.close()
    return ParsedDocument(title or stem_title(path.name), [s for s in sections if s])


def parse_ods(path: Path) -> ParsedDocument:
    """A table per sheet of an OpenDocument spreadsheet (pandas over odfpy)."""
    import pandas

    from ingest.loaders import check_zip_bomb, stem_title

    check_zip_bomb(path, "ODS")
    try:
        sheets = pandas.read_excel(path, sheet_name=None, header=None, engine="odf", dtype=object)
    except Exception as exc:  # odfpy and pandas raise many kinds of errors on broken files
        raise UnreadableFile(f"corrupt ODS ({type(exc).__name__}: {exc})") from None
    sections = []
    for sheet, frame in sheets.items():
        frame = frame.astype(object).where(frame.notna(), None)
        # with header=None the index is the 0-based sheet row (empty rows kept as NaN rows)
        rows = ((int(index) + 1, list(values)) for index, values in zip(frame.index, frame.itertuples(index=False)))
        sections.append(table_section(rows, str(sheet)))
    return ParsedDocument(stem_title(path.name), [s for s in sections if s])
