"""OCR speed, ingest time per new format, watch latency and idle watch CPU; prints figures.

    python bench/formats_watch.py [--corpus DIR] [--ocr-pages N] [--watch-edits N] [--idle-s S]

Every file is made from real text: the PostgreSQL 15 HTML documentation (Debian's
postgresql-doc-15), written into each format by the library that writes it in real life
(fpdf2/Pillow for the scanned PDF, python-pptx, openpyxl, pandas/odfpy, EbookLib, the email
package). Measured in one run, the embedding model loaded once beforehand:
  1. OCR: a scanned PDF (each page a 200 dpi picture of a page of text) through the parse
     worker -> pages/s (Tesseract, one thread per page, as in an ingest)
  2. per format, one file: parse in the worker (s) and a full sync into a fresh index (s, chunks)
  3. watch: a file saved -> its chunks searchable (the index has it), N times -> p50 / p95
  4. an idle watch: the process's CPU over S seconds -> % of one core
  5. (--real FILE...) real files, each as 2.; a PDF also attached to a mail (the attachment
     path) and its table pass alone (pdfplumber on the pages pypdfium2 picks) against pypdf's text
"""

from __future__ import annotations

import argparse
import email.message
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_CORPUS = REPO / "corpora/postgresql-doc-15/usr/share/doc/postgresql-doc-15/html"


def page_texts(corpus: Path, n: int) -> list[tuple[str, str]]:
    """(title, text) of the first n documentation pages with enough text."""
    from ingest.loaders import parse_html

    pages = []
    for path in sorted(corpus.glob("*.html")):
        document = parse_html(path.read_bytes(), path.name)
        text = "\n".join(s.text for s in document.sections)
        if len(text) > 3000:
            pages.append((document.title, text))
        if len(pages) == n:
            break
    return pages


def scanned_pdf(path: Path, pages: list[tuple[str, str]]) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    images = []
    for _, text in pages:
        image = Image.new("L", (1654, 2339), 255)  # A4 at 200 dpi
        draw = ImageDraw.Draw(image)
        lines = [line[:95] for line in text.splitlines() if line.strip()][:55]
        for n, line in enumerate(lines):
            draw.text((100, 100 + 38 * n), line, fill=0, font=font)
        images.append(image.convert("RGB"))
    images[0].save(path, "PDF", resolution=200, save_all=True, append_images=images[1:])
    return path


def make_files(folder: Path, pages: list[tuple[str, str]]) -> dict[str, Path]:
    import mailbox

    import openpyxl
    import pandas
    import pptx
    from ebooklib import epub
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    files = {}
    deck = pptx.Presentation()
    for title, text in pages[:20]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = text[:1500]
    files["pptx"] = folder / "slides.pptx"
    deck.save(files["pptx"])

    words = re.findall(r"[A-Za-z_]{4,}", " ".join(t for _, t in pages))
    rows = [["id", "keyword", "page", "position", "length"]] + [
        [n, word, pages[n % len(pages)][0], n * 7 % 1000, len(word)] for n, word in enumerate(words[:1000])]
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    files["xlsx"] = folder / "keywords.xlsx"
    workbook.save(files["xlsx"])
    files["ods"] = folder / "keywords.ods"
    pandas.DataFrame(rows[1:501], columns=rows[0]).to_excel(files["ods"], engine="odf", index=False)

    document = OpenDocumentText()
    for title, text in pages[:10]:
        document.text.addElement(H(outlinelevel=1, text=title))
        for paragraph in text.split("\n"):
            if paragraph.strip():
                document.text.addElement(P(text=paragraph))
    files["odt"] = folder / "manual.odt"
    document.save(str(files["odt"]))

    book = epub.EpubBook()
    book.set_identifier("pg-bench")
    book.set_title("PostgreSQL pages")
    chapters = []
    for n, (title, text) in enumerate(pages[:15]):
        chapter = epub.EpubHtml(title=title, file_name=f"c{n}.xhtml")
        body = "".join(f"<p>{line}</p>" for line in text.split("\n") if line.strip())
        chapter.content = f"<html><body><h1>{title}</h1>{body}</body></html>".replace("&", "&amp;")
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc, book.spine = chapters, chapters
    book.add_item(epub.EpubNcx())
    files["epub"] = folder / "book.epub"
    epub.write_epub(str(files["epub"]), book)

    box = mailbox.mbox(folder / "list.mbox")
    for title, text in pages[:20]:
        message = email.message.EmailMessage()
        message["Subject"], message["From"], message["Date"] = title, "list@example.org", "Mon, 2 Mar 2026 09:00:00 +0000"
        message.set_content(text[:4000])
        box.add(message)
    box.close()
    files["mbox"] = folder / "list.mbox"
    files["pdf (scanned, OCR)"] = scanned_pdf(folder / "scan.pdf", pages[:3])
    return files


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def bench_ocr(folder: Path, pages, n: int) -> None:
    from ingest.isolation import parse_in_child
    from ingest.ocr import OcrOptions

    pdf = scanned_pdf(folder / "ocr.pdf", pages[:n])
    document, seconds = timed(lambda: parse_in_child("pdf", pdf, 60, ocr=OcrOptions(max_pages=n)))
    words = sum(len(s.text.split()) for s in document.sections)
    print(f"OCR: {len(document.sections)} of {n} scanned pages (A4, 200 dpi) in {seconds:.1f} s = "
          f"{n / seconds:.2f} pages/s ({words} words read)")


def bench_formats(folder: Path, files: dict[str, Path], settings_for, embeddings) -> None:
    from ingest.isolation import parse_in_child
    from ingest.loaders import format_of
    from ingest.sync import sync

    print(f"{'format':<20} {'size KB':>8} {'parse s':>8} {'ingest s':>9} {'chunks':>7}")
    for n, (name, path) in enumerate(files.items()):
        _, parse_s = timed(lambda: parse_in_child(format_of(path), path, 600))
        alone = folder / f"alone{n}"
        alone.mkdir()
        try:
            os.link(path, alone / path.name)
        except OSError:  # another file system
            shutil.copy(path, alone / path.name)
        summary, ingest_s = timed(lambda: sync(settings_for(f"fmt{n}"), [alone], embedder=embeddings))
        print(f"{name:<20} {path.stat().st_size / 1024:>8.0f} {parse_s:>8.2f} {ingest_s:>9.2f} {summary.chunks_added:>7}"
              + (f"  FAILED: {summary.failed}" if summary.failed else ""))


def bench_real(folder: Path, paths: list[Path], settings_for, embeddings) -> None:
    from pypdf import PdfReader

    from ingest import pdf_tables

    files = {path.name[:20]: path for path in paths}
    for path in paths:
        if path.suffix.lower() == ".pdf":
            message = email.message.EmailMessage()
            message["Subject"], message["From"] = f"The {path.stem} manual", "bench@example.org"
            message.set_content(f"Attached: {path.name}.")
            message.add_attachment(path.read_bytes(), maintype="application", subtype="pdf", filename=path.name)
            mail = folder / f"{path.stem}-attached.eml"
            mail.write_bytes(message.as_bytes())
            files[f"eml \u203a {path.name}"[:20]] = mail
            reader = PdfReader(path)
            _, text_s = timed(lambda: [page.extract_text() for page in reader.pages])
            candidates, pick_s = timed(lambda: pdf_tables.candidate_pages(path))
            tables, table_s = timed(lambda: pdf_tables.pages_with_tables(path, candidates))
            print(f"{path.name}: pypdf text {text_s:.2f} s for {len(reader.pages)} pages; table pass "
                  f"{pick_s + table_s:.2f} s (pypdfium2 picks {len(candidates)} pages in {pick_s:.2f} s, "
                  f"pdfplumber {table_s:.2f} s, {len(tables)} pages with tables)")
    bench_formats(folder, files, settings_for, embeddings)


def bench_watch(folder: Path, pages, settings, embeddings, edits: int, idle_s: float) -> None:
    import psutil

    from ingest.watch import watch
    from vectorstore import Store

    docs = folder / "watched"
    docs.mkdir()
    for n, (title, text) in enumerate(pages[:50]):
        (docs / f"page{n:02d}.md").write_text(f"# {title}\n\n{text}")
    synced = threading.Condition()
    reports = []

    def on_sync(report):
        with synced:
            reports.append(report)
            synced.notify_all()

    def has(source: str) -> bool:
        return any(d.source == source for d in Store.open(settings).documents())

    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(settings, [docs]), daemon=True,
                              kwargs={"stop": stop, "on_sync": on_sync, "embedder": embeddings})
    thread.start()
    with synced:
        synced.wait_for(lambda: reports, timeout=600)
    latencies = []
    for n in range(edits):
        title, text = pages[(n + 50) % len(pages)]
        source = f"new{n:02d}.md"
        started = time.perf_counter()
        (docs / source).write_text(f"# {title}\n\n{text[:3000]}")
        with synced:
            synced.wait_for(lambda: has(source), timeout=120)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    print(f"watch latency (a ~3 KB Markdown file saved -> searchable), {edits} saves, "
          f"DOCCHAT_WATCH_DEBOUNCE_MS={settings.watch_debounce_ms}: p50 {statistics.median(latencies):.2f} s, "
          f"p95 {p95:.2f} s, max {latencies[-1]:.2f} s")
    process = psutil.Process()
    before, wall = process.cpu_times(), time.perf_counter()
    stop.wait(idle_s)
    after, wall = process.cpu_times(), time.perf_counter() - wall
    cpu = (after.user + after.system) - (before.user + before.system)
    tick = 1 / os.sysconf("SC_CLK_TCK")  # the kernel counts CPU time in ticks: less than one reads as 0
    print(f"idle watch: {cpu:.3f} s CPU in {wall:.0f} s = {100 * cpu / wall:.3f} % of one core "
          f"(the whole process, watching {len(list(docs.iterdir()))} files; "
          f"resolution {tick:.3f} s = {100 * tick / wall:.3f} %)")
    stop.set()
    thread.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--ocr-pages", type=int, default=10)
    parser.add_argument("--watch-edits", type=int, default=20)
    parser.add_argument("--idle-s", type=float, default=30)
    parser.add_argument("--parts", default="ocr,formats,watch", help="which measurements, comma-separated")
    parser.add_argument("--real", type=Path, nargs="*", default=[], help="real files to measure one by one")
    args = parser.parse_args()

    from app.backends import embedding_backend
    from app.config import load_settings, with_overrides

    work = Path(tempfile.mkdtemp(prefix="docchat-bench-formats-"))
    base = load_settings(env_file=None, data_dir=work / "data")
    embeddings = embedding_backend(base)
    _, load_s = timed(embeddings.prepare)
    print(f"embedding model loaded in {load_s:.1f} s; work folder {work}")
    pages = page_texts(args.corpus, 80)
    parts = set(args.parts.split(","))
    if "ocr" in parts:
        bench_ocr(work, pages, args.ocr_pages)
    if "formats" in parts:
        (work / "files").mkdir()
        files = make_files(work / "files", pages)
        bench_formats(work, files, lambda name: with_overrides(base, index_dir=work / name), embeddings)
    if args.real:
        (work / "real").mkdir()
        bench_real(work / "real", args.real, lambda name: with_overrides(base, index_dir=work / f"real-{name}"), embeddings)
    if "watch" in parts:
        bench_watch(work, pages, with_overrides(base, index_dir=work / "watch-index"), embeddings,
                    args.watch_edits, args.idle_s)


if __name__ == "__main__":
    main()
