"""OCR with Tesseract (Debian's ``tesseract-ocr``): scanned PDF pages and images to text.

Runs inside the parse worker, so a page costs at most ``DOCCHAT_OCR_PAGE_TIMEOUT_S`` (the
tesseract process is killed after it) and a document at most ``DOCCHAT_OCR_MAX_PAGES`` pages;
pages left out are noted with the reason. Without the tesseract program a scanned page is
reported as needing OCR and the rest of the file ingests as before.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from ingest.documents import Section, UnreadableFile

RENDER_DPI = 300  # what Tesseract is trained for
MAX_PIXELS = 40_000_000  # a page or image larger than this is scaled down (a crafted 100k x 100k page)
before_page = None  # set by the parse worker: called as each page's OCR starts (the parent extends its time)
INSTALL_HINT = "install Tesseract (Debian: apt-get install tesseract-ocr tesseract-ocr-eng)"


@dataclass
class OcrOptions:
    """What the parent's settings say about OCR (passed to the worker as JSON)."""

    languages: str = "eng"  # Tesseract's form: "eng+deu"
    max_pages: int = 50
    page_timeout_s: float = 30.0
    enabled: bool = True

    @classmethod
    def from_json(cls, data: dict | None) -> "OcrOptions":
        return cls(**(data or {}))


def missing(options: OcrOptions) -> str | None:
    """Why OCR cannot run here (a sentence naming the fix), or None when it can."""
    if not options.enabled:
        return "OCR is off (DOCCHAT_OCR=false)"
    try:
        found = tesseract()
    except Exception as exc:  # a broken install: say so rather than fail every page
        return f"tesseract does not run ({type(exc).__name__}: {exc})"
    if found is None:
        return f"the tesseract program is not installed: {INSTALL_HINT}"
    absent = absent_languages(options.languages, found[1])
    if absent:
        return f"OCR language {'+'.join(absent)} (DOCCHAT_OCR_LANGUAGES) is not installed: {language_hint(absent)}"
    return None


def tesseract() -> tuple[str, list[str]] | None:
    """(version, installed languages) of the tesseract program on PATH; None when there is none.
    Raises when it is there but does not run."""
    if shutil.which("tesseract") is None:
        return None
    import pytesseract

    return str(pytesseract.get_tesseract_version()), sorted(pytesseract.get_languages(config=""))


def absent_languages(wanted: str, installed: list[str]) -> list[str]:
    return [lang for lang in wanted.split("+") if lang not in installed]


def language_hint(absent: list[str]) -> str:
    return "apt-get install " + " ".join(f"tesseract-ocr-{lang}" for lang in absent)


def read_image(image, options: OcrOptions) -> str:
    """The text Tesseract reads in one PIL image; ``UnreadableFile`` on a timeout or failure."""
    import pytesseract

    if image.width * image.height > MAX_PIXELS:
        scale = (MAX_PIXELS / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    if image.mode not in ("RGB", "L", "1"):
        image = image.convert("RGB")
    # One thread per page: two parse workers already use both cores.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    try:
        return pytesseract.image_to_string(image, lang=options.languages, timeout=options.page_timeout_s)
    except RuntimeError as exc:  # pytesseract's timeout
        if "timeout" in str(exc).lower():
            raise UnreadableFile(f"OCR took longer than DOCCHAT_OCR_PAGE_TIMEOUT_S={options.page_timeout_s:g} s") from None
        raise UnreadableFile(f"OCR failed ({exc})") from None
    except pytesseract.TesseractError as exc:
        raise UnreadableFile(f"OCR failed ({exc.message or exc.status})") from None


def ocr_pages(pages, options: OcrOptions, notes: list[str], what: str = "page") -> list[Section]:
    """OCR sections from (page number, zero-argument function returning a PIL image).

    Pages beyond ``max_pages`` and pages that fail are skipped, each with a note.
    """
    pages = list(pages)
    if not pages:
        return []
    why_not = missing(options)
    if why_not:
        verb = "needs" if len(pages) == 1 else "need"
        notes.append(f"{_numbers((n for n, _ in pages), what)} {verb} OCR (no text layer) and not read: {why_not}")
        return []
    if len(pages) > options.max_pages:
        skipped = pages[options.max_pages:]
        notes.append(f"{_numbers((n for n, _ in skipped), what)} not OCRed: more than DOCCHAT_OCR_MAX_PAGES="
                     f"{options.max_pages} pages need OCR")
        pages = pages[:options.max_pages]
    sections = []
    for number, render in pages:
        if before_page is not None:
            before_page()
        try:
            text = read_image(render(), options)
        except UnreadableFile as exc:  # this page only
            notes.append(f"{what} {number} not OCRed: {exc}")
            continue
        if text.strip():
            sections.append(Section(text, "OCR text", number, ocr=True))
    return sections


def _numbers(numbers, what: str) -> str:
    numbers = list(numbers)
    if len(numbers) == 1:
        return f"{what} {numbers[0]}"
    return f"{what}s {', '.join(map(str, numbers[:10]))}{', ...' if len(numbers) > 10 else ''}"


def pdf_page_renderer(path, index: int):
    """A function rendering page ``index`` (0-based) of a PDF at RENDER_DPI with PDFium."""
    def render():
        import pypdfium2

        document = pypdfium2.PdfDocument(str(path))
        try:
            page = document[index]
            width, height = page.get_size()  # points
            scale = min(RENDER_DPI / 72, (MAX_PIXELS / max(width * height, 1)) ** 0.5)
            return page.render(scale=scale, grayscale=True).to_pil()
        finally:
            document.close()
    return render


def parse_image(path, options: OcrOptions):
    """An image file (png, jpg, tiff; every frame of a multi-page TIFF is a page) through OCR."""
    from PIL import Image, UnidentifiedImageError

    from ingest.documents import ParsedDocument
    from ingest.loaders import stem_title

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow refuses twice this as a decompression bomb
    try:
        image = Image.open(path)
        frames = getattr(image, "n_frames", 1)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableFile(f"not a readable image ({type(exc).__name__}: {exc})") from None
    why_not = missing(options)
    if why_not:
        raise UnreadableFile(f"needs OCR (an image has no text layer): {why_not}")

    def frame(n: int):  # decoded only when its turn comes: a 1,000-frame TIFF is not held in memory
        def render():
            try:
                image.seek(n)
                return image.copy()
            except (Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
                raise UnreadableFile(f"frame not readable ({type(exc).__name__}: {exc})") from None
        return render

    notes: list[str] = []
    sections = ocr_pages([(n + 1, frame(n)) for n in range(frames)], options, notes)
    for section in sections if frames == 1 else ():
        section.page = None
    if not sections and notes:
        raise UnreadableFile("; ".join(notes))
    return ParsedDocument(stem_title(path.name), sections, notes)
