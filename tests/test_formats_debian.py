"""Real files from Debian packages, through the real parsers in the real worker: what generated
files cannot show (inline strings, invalid-but-real EPUB manifests, an OpenOffice.org manual, mail
from 2001). Each file's package, version and licence: tests/data/debian/README.md."""

from __future__ import annotations

from pathlib import Path

from ingest.isolation import parse_in_child
from ingest.loaders import format_of
from ingest.sync import sync

DEBIAN = Path(__file__).parent / "data" / "debian"


def parse(name: str):
    return parse_in_child(format_of(DEBIAN / name), DEBIAN / name, timeout_s=60)


def test_an_ods_from_python_odf_doc_gives_each_sheet_its_rows():
    sheets = {s.heading: s for s in parse("countrystatistics.ods").sections}
    assert sheets["Population"].text == "Country | Population in millions | Area km2 | Pop. density People/km2"
    assert (11, "row 11: Country: Germany; Population in millions: 82.3; Area km2: 357021; "
                "Pop. density People/km2: 231") in sheets["Population"].rows
    assert (2, "row 2: HDI Rank: 1; Country: Iceland; 2005: 968") in sheets["HDI"].rows


def test_an_xlsx_with_inline_strings_from_r_cran_openxlsx_is_read():
    [sheet] = parse("inlineStr.xlsx").sections
    assert (sheet.heading, sheet.text) == ("Sheet1", "this | it")
    assert sheet.rows[0] == (2, "row 2: this: is an xlsx file; it: cannot be read")


def test_an_odt_manual_from_python_odf_doc_keeps_its_heading_paths():
    document = parse("api-for-odfpy.odt")
    assert document.title == "Application Programmer's Interface for ODFPY"
    about = next(s for s in document.sections if s.heading == "Introduction > About OpenDocument")
    assert about.text.startswith("About OpenDocument\nAn OpenDocument file is essentially an XML structure")


def test_an_epub_whose_manifest_points_into_files_is_read_once_per_file():
    document = parse("live-manual.en.epub")  # live-manual-epub: 143 manifest entries like "a.xhtml#o8"
    assert document.title == "Live Systems Manual"
    tools = [s.text for s in document.sections if "three main tools used in building live systems" in s.text]
    assert len(tools) == 1  # its chapter file read once, not once per "#o…" entry


def test_real_mails_from_the_python_testsuite_keep_their_attachments_apart(settings, embeddings, tmp_path):
    fish = parse("dingus-fish.eml")
    assert fish.title == "Here is your dingus fish" and "This is the dingus fish." in fish.sections[0].text
    assert fish.notes == ["attachment dingusfish.gif not read: unsupported file type .gif"]
    docs = tmp_path / "mail"
    docs.mkdir()
    for name in ("dingus-fish.eml", "simple-multipart.eml"):
        (docs / name).write_bytes((DEBIAN / name).read_bytes())
    summary = sync(settings, [docs], embedder=embeddings)
    assert sorted(summary.added) == ["dingus-fish.eml", "simple-multipart.eml", "simple-multipart.eml \u203a msg.txt"]
    assert summary.notes == ["dingus-fish.eml: attachment dingusfish.gif not read: unsupported file type .gif"]
