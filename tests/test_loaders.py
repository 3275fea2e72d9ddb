"""Every format in, the right text and metadata out; every kind of bad file reported, the rest kept.

The corpus is generated here: real PDF (fpdf2), encrypted PDF (pypdf), DOCX (python-docx),
HTML, Markdown, reStructuredText, CSV and text in a legacy encoding. Ingest runs the real
parsers, the packaged embedding model, FAISS and SQLite.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from app.config import with_overrides
from ingest.isolation import parse_in_child
from ingest.sync import sync
from vectorstore import Store

HTML = """<!DOCTYPE html><html><head><title>Harbour Guide</title><style>.x{color:red}</style>
<script>var secret = "script text must not be indexed";</script></head><body>
<div class="navheader"><a href="prev.html">Prev</a> NAVIGATION HEADER TEXT</div>
<nav>Site menu link</nav>
<h1>Harbour Guide</h1><p>The harbour opens at dawn and
closes at dusk, every day of the year.</p>
<h2>Moorings</h2><p>Visitors moor on the eastern pontoon, which has water and electricity for yachts.</p>
<h3>Fees<a class="headerlink" href="#fees" title="Permalink to this heading">\u00b6</a></h3><p>A night on the pontoon costs twelve euros for boats under ten metres long.</p>
<pre>moor --pontoon east
  --nights 2</pre>
<div class="navfooter">NAVIGATION FOOTER TEXT</div><footer>Copyright footer</footer></body></html>"""

MARKDOWN = """# Garden Manual

Intro paragraph about the community garden and who may use it on weekends.

## Watering

```
# not a heading: a shell comment inside a code fence
water --zone north
```

Water the tomato beds every morning in summer, before the sun gets too hot.

### Rain barrels

The rain barrels behind the shed collect water for the herb garden all year.
"""

RST = """Kiln Handbook
=============

The kiln in the pottery studio reaches high temperatures and needs care.

Firing schedule
---------------

Bisque firing runs overnight on Tuesdays and glaze firing on Fridays, supervised.
"""


def make_pdf(path: Path, pages: list[str], title: str = "Lighthouse Log") -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Bakery Procedures", level=1)
    document.add_paragraph("Every loaf is weighed before it goes into the oven at the bakery.")
    document.add_heading("Sourdough", level=2)
    document.add_paragraph("The sourdough starter is fed with rye flour at six in the evening.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Bread", "Oven minutes"
    table.cell(1, 0).text, table.cell(1, 1).text = "Baguette", "twenty-two"
    document.save(str(path))
    return path


def write_every_format(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "guide.html").write_text(HTML, encoding="utf-8")
    (folder / "notes").mkdir()
    (folder / "notes" / "garden.md").write_text(MARKDOWN, encoding="utf-8")
    (folder / "kiln.rst").write_text(RST, encoding="utf-8")
    (folder / "legacy.txt").write_bytes("Café crème brûlée recipe from the Château kitchen, written in Latin-1.".encode("latin-1"))
    (folder / "boats.csv").write_text("name,length,harbour\nSeagull,8 m,Eastport\nPetrel,11 m,Westport\n", encoding="utf-8")
    make_pdf(folder / "log.pdf", ["The lighthouse keeper lit the lamp at sunset on the first page. " * 3,
                                  "On the second page the fog horn sounded twice before midnight. " * 3])
    make_docx(folder / "bakery.docx")
    (folder / "clip.mp3").write_bytes(b"ID3" + b"\x00" * 64)
    (folder / ".hidden.md").write_text("# hidden\n\nnot ingested at all, hidden files are ignored entirely.")
    return folder


@pytest.fixture(scope="module")
def every_format(tmp_path_factory, embeddings):
    """One ingest of the every-format corpus, shared by the read-only tests below."""
    from app.config import load_settings

    base = tmp_path_factory.mktemp("every")
    settings = load_settings(env_file=None, data_dir=base / "data")
    folder = write_every_format(base / "docs")
    summary = sync(settings, [folder], embedder=embeddings)
    return settings, folder, summary, Store.open(settings)


def _chunks(store: Store, source: str):
    hits = store.chunks_of(source)
    assert hits, f"{source} has no chunks"
    return hits


def test_every_supported_format_is_ingested_and_others_are_skipped(every_format):
    _, folder, summary, store = every_format
    assert sorted(summary.added) == ["bakery.docx", "boats.csv", "guide.html", "kiln.rst", "legacy.txt",
                                     "log.pdf", "notes/garden.md"]
    assert summary.skipped == [("clip.mp3", "unsupported file type .mp3")]
    assert summary.failed == []
    assert {d.source for d in store.documents()} == set(summary.added)
    assert all(d.root == str(folder) for d in store.documents())


def test_html_keeps_main_text_with_heading_paths_and_drops_navigation(every_format):
    store = every_format[3]
    hits = _chunks(store, "guide.html")
    text = "\n".join(h.text for h in hits)
    assert "closes at dusk" in text and "twelve euros" in text
    assert "opens at dawn and closes" in text  # source line breaks inside a paragraph are not kept
    for dropped in ("NAVIGATION HEADER", "NAVIGATION FOOTER", "Site menu", "script text", "color:red", "Copyright"):
        assert dropped not in text
    fees = next(h for h in hits if "twelve euros" in h.text)
    assert fees.heading == "Harbour Guide > Moorings > Fees"  # no Sphinx permalink mark (¶)
    assert "\u00b6" not in text
    assert fees.metadata["title"] == "Harbour Guide"
    assert "--nights 2" in fees.text


def test_markdown_headings_ignore_code_fences(every_format):
    store = every_format[3]
    hits = _chunks(store, "notes/garden.md")
    assert {h.heading for h in hits} >= {"Garden Manual > Watering", "Garden Manual > Watering > Rain barrels"}
    assert not any("shell comment" in (h.heading or "") for h in hits)
    meta = hits[0].metadata
    assert meta["source"] == "notes/garden.md" and meta["title"] == "Garden Manual" and meta["page"] is None
    assert [h.metadata["position"] for h in hits] == list(range(len(hits)))
    assert all(len(h.metadata["content_hash"]) == 32 for h in hits)


def test_pdf_chunks_carry_page_numbers(every_format):
    hits = _chunks(every_format[3], "log.pdf")
    pages = {h.page for h in hits if "fog horn" in h.text} | {h.page for h in hits if "lamp at sunset" in h.text}
    assert pages == {1, 2}
    assert next(h.page for h in hits if "fog horn" in h.text) == 2
    assert hits[0].metadata["title"] == "Lighthouse Log"


def test_docx_heading_styles_and_tables(every_format):
    hits = _chunks(every_format[3], "bakery.docx")
    sourdough = next(h for h in hits if "rye flour" in h.text)
    assert sourdough.heading == "Bakery Procedures > Sourdough"
    table = next(h for h in hits if "Baguette" in h.text)  # a table: header line, then labelled rows
    assert table.text == "Bread | Oven minutes\nrow 2: Bread: Baguette; Oven minutes: twenty-two"
    assert table.heading == "Bakery Procedures > Sourdough, row 2"


def test_rst_csv_and_legacy_encoding(every_format):
    store = every_format[3]
    kiln = _chunks(store, "kiln.rst")
    assert any(h.heading == "Kiln Handbook > Firing schedule" and "glaze firing" in h.text for h in kiln)
    rows = "\n".join(h.text for h in _chunks(store, "boats.csv"))
    assert "name: Petrel; length: 11 m; harbour: Westport" in rows
    assert "Café crème brûlée" in _chunks(store, "legacy.txt")[0].text


def test_ingested_text_is_searchable_by_meaning_and_keyword(every_format, embeddings):
    store = every_format[3]
    query = embeddings.embed_query("When is the sourdough starter fed?")
    assert store.search(query, 1)[0].source == "bakery.docx"
    assert store.keyword_search("pontoon electricity", 1)[0].source == "guide.html"


def test_embed_headings_prefixes_only_the_embedded_text(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "garden.md").write_text(MARKDOWN)
    on = sync(settings, [docs], embedder=embeddings)
    off_settings = with_overrides(settings, embed_headings=False, index_dir=tmp_path / "plain-index")
    off = sync(off_settings, [docs], embedder=embeddings)
    with_context, plain = Store.open(settings), Store.open(off_settings)
    assert on.chunks_added == off.chunks_added
    rain_on = next(h for h in with_context.chunks_of("garden.md") if "rain barrels" in h.text)
    rain_off = next(h for h in plain.chunks_of("garden.md") if "rain barrels" in h.text)
    assert rain_on.text == rain_off.text  # what the model is shown is the same
    assert rain_on.metadata["content_hash"] != rain_off.metadata["content_hash"]  # what was embedded differs
    vectors = (with_context.vectors([rain_on.chunk_id])[0], plain.vectors([rain_off.chunk_id])[0])
    assert float(vectors[0] @ vectors[1]) < 0.999


# -- bad input ------------------------------------------------------------------------------
def _zip_bomb_docx(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\x00" * (64 << 20))  # 64 MiB of zeros -> ~64 KB
    path.write_bytes(buffer.getvalue())
    return path


def test_each_bad_file_is_reported_with_its_reason_and_the_rest_ingested(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThis document is fine and must be ingested whatever else happens.")
    (docs / "empty.md").write_text("")
    (docs / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf at all\n%%EOF")
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 not a zip archive")
    make_pdf(docs / "source.pdf", ["secret minutes of the meeting " * 5])
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(docs / "source.pdf").pages:
        writer.add_page(page)
    writer.encrypt("hunter2")
    writer.write(docs / "locked.pdf")
    (docs / "source.pdf").unlink()
    _zip_bomb_docx(docs / "bomb.docx")
    (docs / "huge.txt").write_text("x" * 300_000)

    summary = sync(with_overrides(settings, max_file_mb=0.2), [docs], embedder=embeddings)

    reasons = dict(summary.failed)
    assert summary.added == ["good.md"]
    assert set(reasons) == {"empty.md", "photo.txt", "broken.pdf", "broken.docx", "locked.pdf", "bomb.docx", "huge.txt"}
    assert reasons["empty.md"].startswith("empty")
    assert "binary content" in reasons["photo.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "not a valid zip" in reasons["broken.docx"]
    assert "encrypted" in reasons["locked.pdf"]
    assert "zip bomb" in reasons["bomb.docx"]
    assert "too large" in reasons["huge.txt"] and "DOCCHAT_MAX_FILE_MB" in reasons["huge.txt"]
    assert not summary.ingested_nothing
    assert [d.source for d in Store.open(settings).documents()] == ["good.md"]


def test_a_parse_over_the_time_limit_is_stopped(tmp_path):
    pdf = make_pdf(tmp_path / "slow.pdf", ["words " * 400] * 30)
    from ingest.documents import UnreadableFile

    with pytest.raises(UnreadableFile, match="DOCCHAT_PARSE_TIMEOUT_S"):
        parse_in_child("pdf", pdf, timeout_s=0.001)
    assert parse_in_child("pdf", pdf, timeout_s=60).sections[29].page == 30


def test_a_parser_that_runs_out_of_memory_only_fails_its_file(tmp_path):
    pdf = make_pdf(tmp_path / "big.pdf", ["words " * 4000] * 30)
    from ingest.documents import UnreadableFile

    # A cap below what the child already uses: the parser fails inside the child, not here.
    # The text (~700 KB) needs fresh memory: a small file could be parsed in what the forked
    # worker already has, and then the cap would never bite (seen once under load).
    with pytest.raises(UnreadableFile):
        parse_in_child("pdf", pdf, timeout_s=60, memory_limit=1 << 20)
