"""The formats beyond text, PDF and DOCX: each from a small file generated here with the same
kind of library that writes it in real life (python-pptx, openpyxl, pandas/odfpy, EbookLib,
Python's email package, Pillow), parsed by the real parsers in the real worker process.

OCR runs Debian's tesseract (tesseract-ocr, tesseract-ocr-eng; installed by .ci/run) on a
scanned PDF made by rendering text to an image and saving that image as a PDF.
"""

from __future__ import annotations

import email.message
import mailbox
import shutil
from pathlib import Path

import pytest

from app.config import with_overrides
from ingest.isolation import parse_in_child
from ingest.loaders import format_of, parse_file
from ingest.ocr import OcrOptions
from ingest.splitter import make_splitter, split_document
from ingest.sync import sync

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng)")


def parse(path: Path, **ocr):
    return parse_in_child(format_of(path), path, timeout_s=60, ocr=OcrOptions(**ocr))


def text_image(lines: list[str]):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1700, 400 + 90 * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=56)
    for n, line in enumerate(lines):
        draw.text((120, 200 + 90 * n), line, fill=0, font=font)
    return image


def make_scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A PDF with no text layer: each page is a picture of its text, as a scanner makes it."""
    images = [text_image(lines).convert("RGB") for lines in pages]
    images[0].save(path, "PDF", resolution=200, save_all=True, append_images=images[1:])
    return path


def make_xlsx(path: Path, rows: list[list]) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.active.title = "Stock"
    for row in rows:
        workbook.active.append(row)
    notes = workbook.create_sheet("Notes")
    notes.append(["topic", "note"])
    notes.append(["audit", "The warehouse audit happens every March."])
    workbook.save(path)
    return path


def stock_rows(n: int = 120) -> list[list]:
    rows = [["sku", "product", "warehouse", "quantity"]]
    for i in range(1, n + 1):
        rows.append([f"SKU-{i:04d}", f"Item number {i}", "Rotterdam" if i % 2 else "Hamburg", i * 3])
    rows[77] = ["SKU-0077", "Blue ceramic teapot", "Lyon", 37]  # spreadsheet row 78
    return rows


def make_pptx(path: Path) -> Path:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Quarterly Review"
    first.placeholders[1].text = "Revenue grew in the northern region thanks to the new ferry line."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Staffing"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(6), Inches(1)).table
    for (r, c), text in {(0, 0): "team", (0, 1): "headcount", (1, 0): "Lighthouse crew", (1, 1): "14"}.items():
        table.cell(r, c).text = text
    second.notes_slide.notes_text_frame.text = "Hiring freeze until the autumn."
    deck.save(path)
    return path


def make_odt(path: Path) -> Path:
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Orchard Rules"))
    document.text.addElement(P(text="Apples are picked by hand in September, never shaken from the tree."))
    document.text.addElement(H(outlinelevel=2, text="Ladders"))
    document.text.addElement(P(text="Ladders are stored in the blue barn and checked every Monday."))
    table = Table(name="Trees")
    table.addElement(TableColumn(numbercolumnsrepeated=2))
    for cells in (["variety", "rows"], ["Cox", "12"]):
        row = TableRow()
        for value in cells:
            cell = TableCell()
            cell.addElement(P(text=value))
            row.addElement(cell)
        table.addElement(row)
    document.text.addElement(table)
    document.save(str(path))
    return path


def make_ods(path: Path) -> Path:
    import pandas

    frame = pandas.DataFrame({"city": ["Lisbon", "Porto"], "rainfall_mm": [774, 1254]})
    frame.to_excel(path, engine="odf", sheet_name="Rain", index=False)
    return path


def make_epub(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("docchat-test")
    book.set_title("The Keeper's Year")
    book.set_language("en")
    chapters = []
    for n, (title, body) in enumerate([("Winter", "In winter the keeper polishes the great lens every evening."),
                                       ("Summer", "In summer visitors climb the tower on Sunday afternoons.")], start=1):
        chapter = epub.EpubHtml(title=title, file_name=f"chap_{n}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{title}</h1><p>{body}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return path


def make_message(subject: str, body: str, attachment: tuple[str, bytes] | None = None) -> email.message.EmailMessage:
    message = email.message.EmailMessage()
    message["Subject"], message["From"], message["To"] = subject, "Ada <ada@example.org>", "team@example.org"
    message["Date"] = "Mon, 02 Mar 2026 09:15:00 +0000"
    message.set_content(body)
    if attachment:
        message.add_attachment(attachment[1], maintype="text", subtype="markdown", filename=attachment[0])
    return message


# -- formats, each through its parser in the worker -------------------------------------------
@needs_tesseract
def test_a_scanned_pdf_is_read_by_ocr_with_its_page_numbers(tmp_path):
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", [["The boiler room key", "hangs behind the red door."],
                                                    ["Deliveries arrive on", "Thursday mornings only."]])
    document = parse(pdf)
    pages = {s.page: " ".join(s.text.split()) for s in document.sections}
    assert set(pages) == {1, 2}
    assert "boiler room key" in pages[1] and "Thursday mornings" in pages[2]
    assert all(s.ocr and s.heading == "OCR text" for s in document.sections)
    chunks = split_document(document, root="r", source="scan.pdf", splitter=make_splitter(1000, 150), embed_headings=True)
    assert {c.metadata["page"] for c in chunks} == {1, 2} and all(c.metadata["ocr"] for c in chunks)


@needs_tesseract
def test_an_image_is_read_by_ocr_and_ocr_is_bounded_per_document(tmp_path):
    text_image(["Invoice total: 1250 euros"]).save(tmp_path / "invoice.png")
    invoice = parse(tmp_path / "invoice.png").sections
    assert "1250 euros" in invoice[0].text and invoice[0].page is None
    first, second = text_image(["Fax page one: harbour"]), text_image(["Fax page two: lighthouse"])
    first.save(tmp_path / "fax.tiff", save_all=True, append_images=[second])
    assert [(s.page, "lighthouse" in s.text) for s in parse(tmp_path / "fax.tiff").sections] == [(1, False), (2, True)]
    pdf = make_scanned_pdf(tmp_path / "long.pdf", [[f"Page {n} of the ledger"] for n in range(1, 4)])
    document = parse(pdf, max_pages=1)
    assert [s.page for s in document.sections] == [1]
    assert document.notes == ["pages 2, 3 not OCRed: more than DOCCHAT_OCR_MAX_PAGES=1 pages need OCR"]
    slow = parse(pdf, page_timeout_s=0.01)  # each page's tesseract is stopped: skipped with the reason
    assert slow.sections == [] and slow.notes[0] == "page 1 not OCRed: OCR took longer than DOCCHAT_OCR_PAGE_TIMEOUT_S=0.01 s"


def test_without_tesseract_a_scan_is_reported_as_needing_ocr(tmp_path, monkeypatch):
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", [["Nothing to see without OCR"]])
    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract program on the path (parsed in this process)
    document = parse_file("pdf", pdf)
    assert document.is_empty
    assert "page 1 needs OCR (no text layer)" in document.notes[0] and "apt-get install tesseract-ocr" in document.notes[0]


def test_pptx_slides_keep_number_title_tables_and_notes(tmp_path):
    document = parse(make_pptx(tmp_path / "review.pptx"))
    by_heading = {s.heading: s for s in document.sections if not s.rows}
    assert "ferry line" in by_heading["Slide 1: Quarterly Review"].text
    assert "Hiring freeze" in by_heading["Slide 2: Staffing"].text
    table = next(s for s in document.sections if s.rows)
    assert (table.text, table.rows) == ("team | headcount", [(2, "row 2: team: Lighthouse crew; headcount: 14")])


def test_xlsx_and_ods_sheets_become_tables_with_row_numbers(tmp_path):
    document = parse(make_xlsx(tmp_path / "stock.xlsx", stock_rows()))
    stock, notes = document.sections
    assert (stock.heading, stock.text) == ("Stock", "sku | product | warehouse | quantity")
    assert (78, "row 78: sku: SKU-0077; product: Blue ceramic teapot; warehouse: Lyon; quantity: 37") in stock.rows
    assert notes.heading == "Notes" and notes.rows == [(2, "row 2: topic: audit; note: The warehouse audit happens every March.")]
    chunks = split_document(document, root="r", source="stock.xlsx", splitter=make_splitter(500, 50), embed_headings=True)
    assert len(chunks) > 5
    assert all(c.text.startswith(("sku | product | warehouse | quantity\nrow ", "topic | note\nrow ")) for c in chunks)
    teapot = next(c for c in chunks if "teapot" in c.text)
    first, last = (int(n) for n in teapot.metadata["heading"].split("rows ")[1].split("\u2013"))
    assert first <= 78 <= last
    rain = parse(make_ods(tmp_path / "rain.ods")).sections[0]
    assert (rain.heading, rain.text, rain.rows[1]) == ("Rain", "city | rainfall_mm", (3, "row 3: city: Porto; rainfall_mm: 1254"))


def test_odt_headings_and_tables(tmp_path):
    document = parse(make_odt(tmp_path / "orchard.odt"))
    ladders = next(s for s in document.sections if "blue barn" in s.text)
    assert ladders.heading == "Orchard Rules > Ladders"
    assert next(s for s in document.sections if s.rows).rows == [(2, "row 2: variety: Cox; rows: 12")]


def test_epub_chapters_are_headings(tmp_path):
    document = parse(make_epub(tmp_path / "keeper.epub"))
    assert document.title == "The Keeper's Year"
    summer = next(s for s in document.sections if "visitors climb" in s.text)
    assert summer.heading == "Summer"


def test_eml_and_mbox_keep_subject_sender_date_and_read_attachments(tmp_path):
    eml = tmp_path / "minutes.eml"
    eml.write_bytes(make_message("Board minutes", "The board approved the new pier budget.",
                                 ("agenda.md", b"# Agenda\n\nItem one: repaint the harbour crane in May.")).as_bytes())
    document = parse(eml)
    heading = "Board minutes (Ada <ada@example.org>, Mon, 02 Mar 2026 09:15:00 +0000)"
    assert document.title == "Board minutes"
    assert document.sections[0].heading == heading and "pier budget" in document.sections[0].text
    [attachment] = document.attachments  # a document of its own, parsed by the Markdown parser
    assert (attachment.name, attachment.document.title) == ("agenda.md", "Agenda (attached to: Board minutes)")
    assert attachment.document.sections[0].heading == "Agenda" and "harbour crane" in attachment.document.sections[0].text
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for n in range(3):
        box.add(make_message(f"Weekly note {n}", f"Week {n}: the tide tables were updated."))
    box.flush()
    box.close()
    assert [s.heading.split(" (")[0] for s in parse(tmp_path / "archive.mbox").sections] == \
        ["Weekly note 0", "Weekly note 1", "Weekly note 2"]


def test_a_mail_bomb_of_attachments_is_bounded_with_a_reason(tmp_path):
    from ingest.attachments import MAX_ATTACHMENTS

    message = make_message("Spam", "Many files.")
    for n in range(MAX_ATTACHMENTS + 5):
        message.add_attachment(f"Note {n}: the tide was high.".encode(), maintype="text", subtype="plain",
                               filename="note.txt")  # the same name each time
    (tmp_path / "spam.eml").write_bytes(message.as_bytes())
    document = parse(tmp_path / "spam.eml")
    names = [a.name for a in document.attachments]
    assert len(names) == MAX_ATTACHMENTS and names[:3] == ["note.txt", "note (2).txt", "note (3).txt"]
    assert document.notes == [f"attachments after the first {MAX_ATTACHMENTS} not read (a bound against mail "
                              "bombs): save them as files to ingest them"]


# -- in the index: the right row found; bad files reported, the rest ingested -----------------
def test_a_spreadsheet_question_finds_the_right_row(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_xlsx(docs / "stock.xlsx", stock_rows())
    sync(settings, [docs], embedder=embeddings)
    from app.retriever import DocchatRetriever

    # The chat's own retrieval (hybrid dense + keyword): the question names the row's product.
    retriever = DocchatRetriever(settings=settings, embeddings=embeddings.embeddings, k=1)
    hit = retriever.invoke("How many blue ceramic teapots are in the Lyon warehouse?")[0]
    assert "row 78: sku: SKU-0077; product: Blue ceramic teapot; warehouse: Lyon; quantity: 37" in hit.page_content
    assert hit.page_content.startswith("sku | product | warehouse | quantity\n")  # the header, in this chunk too
    assert hit.metadata["heading"].startswith("Stock, rows ")


def make_fleet_pdf(path: Path) -> Path:
    """A ruled table over two pages (fpdf2 repeats its header row on the second), text around it."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 7, "Ferry fleet register: every vessel with its home port, seats and year built.")
    with pdf.table() as table:
        table.row(["vessel", "home port", "seats", "built"])
        for n in range(1, 61):
            row = ["Petrel", "Saint-Malo", "212", "1987"] if n == 47 else \
                [f"Vessel {n}", "Eastport" if n % 2 else "Westhaven", str(100 + n), str(1990 + n % 30)]
            table.row(row)
    pdf.multi_cell(0, 7, "All vessels are inspected every spring.")
    pdf.output(str(path))
    return path


def test_a_table_inside_a_pdf_is_chunked_by_rows_and_the_right_row_found(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_fleet_pdf(docs / "fleet.pdf")
    sync(settings, [docs], embedder=embeddings)
    from app.retriever import DocchatRetriever

    retriever = DocchatRetriever(settings=settings, embeddings=embeddings.embeddings, k=1)
    hit = retriever.invoke("How many seats does the Petrel have?")[0]
    assert "row 48: vessel: Petrel; home port: Saint-Malo; seats: 212; built: 1987" in hit.page_content
    assert hit.page_content.startswith("vessel | home port | seats | built\n")  # the header, repeated
    assert hit.metadata["page"] == 2 and hit.metadata["heading"].startswith("Table 1, rows ")  # one table, 2 pages
    text = retriever.invoke("When are the vessels inspected?")[0]
    assert "inspected every spring" in text.page_content and "Petrel" not in text.page_content


def test_bad_files_of_each_new_type_are_reported_and_the_rest_ingested(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThis document is fine and must be ingested whatever else happens.")
    for name in ("deck.pptx", "sheet.xlsx", "sheet.ods", "text.odt", "book.epub"):
        (docs / name).write_bytes(b"PK\x03\x04 truncated, not a zip archive")
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (docs / "note.eml").write_bytes(b"")
    summary = sync(with_overrides(settings, ocr=False), [docs], embedder=embeddings)
    reasons = dict(summary.failed)
    assert summary.added == ["good.md"]
    for name, kind in (("deck.pptx", "PPTX"), ("sheet.xlsx", "XLSX"), ("sheet.ods", "ODS"), ("text.odt", "ODT"),
                       ("book.epub", "EPUB")):
        assert reasons[name].startswith(f"corrupt {kind} (not a valid zip archive"), reasons[name]
    assert reasons["photo.png"].startswith("not a readable image")
    assert "no headers" in reasons["note.eml"]


def test_code_json_and_yaml_keep_line_ranges_symbols_and_key_paths(tmp_path):
    functions = "".join(f"def tide_{n}(day):\n    '''Tide number {n}.'''\n    return day * {n} + {'1' * 40}\n\n\n"
                        for n in range(40))
    (tmp_path / "tides.py").write_text("import math\n\n\n" + functions + "class Harbour:\n    def berth(self):\n        return 1\n")
    sections = parse(tmp_path / "tides.py").sections
    assert len(sections) > 2 and all(s.text.lstrip().startswith(("def ", "class ", "import")) for s in sections)
    assert any(s.heading.startswith("lines ") and s.heading.endswith(": Harbour") for s in sections)
    first_line = int(sections[1].heading.split()[1].split("\u2013")[0])
    assert (tmp_path / "tides.py").read_text().splitlines()[first_line - 1] == sections[1].text.splitlines()[0]
    (tmp_path / "jquery.min.js").write_text("!function(e){" + "var a=1;" * 5000 + "}")
    with pytest.raises(Exception, match="minified or generated code"):
        parse(tmp_path / "jquery.min.js")
    (tmp_path / "ferries.json").write_text('{"ferries": [{"name": "Skylark", "seats": 120}], "port": "Eastport"}')
    assert [(s.heading, s.text) for s in parse(tmp_path / "ferries.json").sections] == \
        [("ferries", "ferries[0].name: Skylark\nferries[0].seats: 120"), ("port", "port: Eastport")]
    (tmp_path / "server.yaml").write_text("server:\n  port: 8080\n  hosts: [alpha, beta]\n")
    assert parse(tmp_path / "server.yaml").sections[0].text == "server.port: 8080\nserver.hosts[0]: alpha\nserver.hosts[1]: beta"
    (tmp_path / "laughs.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + n)}: &{chr(98 + n)} [*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, "
        f"*{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}, *{chr(97 + n)}]\n" for n in range(8)))
    from ingest.documents import UnreadableFile

    with pytest.raises(UnreadableFile, match="more than 200,000 values"):
        parse(tmp_path / "laughs.yaml")


def test_html_tables_are_chunked_by_rows_with_their_header(tmp_path):
    rows = "".join(f"<tr><td>Route {n}</td><td>{n * 5} min</td></tr>" for n in range(1, 41))
    (tmp_path / "timetable.html").write_text(f"<html><body><h1>Timetable</h1><p>Ferries run daily.</p>"
                                             f"<table><tr><th>route</th><th>crossing</th></tr>{rows}</table></body></html>")
    document = parse(tmp_path / "timetable.html")
    table = next(s for s in document.sections if s.rows)
    assert (table.heading, table.text, table.rows[-1]) == ("Timetable", "route | crossing", (41, "row 41: route: Route 40; crossing: 200 min"))
    chunks = split_document(document, root="r", source="t.html", splitter=make_splitter(1000, 150), embed_headings=True)
    assert all(c.text.startswith("route | crossing\n") for c in chunks if "Route" in c.text)
