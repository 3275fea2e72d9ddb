"""The source viewer's PDF page: rendered here (pypdfium2), the supporting sentence
highlighted where it stands on the page; and readable figures."""

from __future__ import annotations

import io

from PIL import Image

from app.ui.formatting import age_group, duration, size, when
from app.ui.viewer import evidence_spans, render_pdf_page

SENTENCE = "The boiler pressure should stay between 1.2 and 1.5 bar."


def make_pdf(path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=14)
    for text in ["A first page about nothing in particular.", "Pressure. " + SENTENCE]:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


def orange_pixels(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if r > 240 and 170 < g < 235 and b < 170)


def test_the_cited_page_is_rendered_with_its_sentence_highlighted(tmp_path):
    pdf = tmp_path / "boiler.pdf"
    make_pdf(pdf)
    plain = render_pdf_page(pdf, 2)
    marked = render_pdf_page(pdf, 2, [SENTENCE])
    assert plain.startswith(b"\x89PNG") and orange_pixels(plain) == 0
    assert orange_pixels(marked) > 1000  # a highlighted line of text
    assert orange_pixels(render_pdf_page(pdf, 1, [SENTENCE])) == 0  # not on that page
    assert render_pdf_page(pdf, 3) is None  # no such page
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    assert render_pdf_page(tmp_path / "broken.pdf", 1) is None  # the passage text still shows


def test_evidence_found_even_when_offsets_moved():
    class E:
        def __init__(self, text, start, end):
            self.text, self.start, self.end = text, start, end

    text = "Intro. The gate code is 4711. Outro."
    assert evidence_spans(text, [E("The gate code is 4711.", 7, 29)]) == [(7, 29)]
    assert evidence_spans(text, [E("The gate code is 4711.", 0, 22)]) == [(7, 29)]  # found by its text
    assert evidence_spans(text, [E("Not there.", 0, 10)]) == []


def test_figures_read_as_people_say_them():
    from datetime import datetime, timedelta, timezone

    assert [duration(x) for x in (None, 340, 1234, 125_000)] == ["n/a", "340 ms", "1.2 s", "2 min 5 s"]
    assert [size(x) for x in (812, 4300, 1_363_149)] == ["812 B", "4.2 KB", "1.3 MB"]
    now = datetime(2026, 3, 11, 15, 0, tzinfo=timezone.utc).astimezone()
    at = (now - timedelta(days=1)).isoformat()
    assert age_group(now.isoformat(), now) == "Today" and age_group(at, now) == "Yesterday"
    assert age_group((now - timedelta(days=30)).isoformat(), now) == "Older"
    assert when(at, now).startswith("yesterday ") and when("garbage", now) == ""
