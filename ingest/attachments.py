"""A mail's attachments as documents of their own in the index.

An attachment is cataloged beside its mail under the source ``"mail.eml › report.pdf"``: it is
listed, cited and searched like a file, with its own title, type and locations (a PDF
attachment's pages). It has no file on disk, so sync keeps it tied to its mail instead of
comparing it with the folder: it is written, replaced, renamed and removed together with the
mail, in the same commit. Its catalog row says what it is: its ``sha256`` is ``MARK`` followed
by the hash of the attachment's bytes (a real file's is 64 hex digits), so no schema change,
and a real file whose name happens to contain ``SEP`` is never taken for one.

Attachment names come from the mail, so from anyone: ``safe_name`` keeps a plain file name
(no folders, no control or direction-changing characters, no markup, bounded length).
"""

from __future__ import annotations

import re
import unicodedata

SEP = " \u203a "  # "mail.eml › report.pdf"
MARK = "attachment:"
MAX_NAME_CHARS = 120
# Bounds for a mail or mailbox: a spam archive can hold thousands of attached files.
MAX_ATTACHMENTS = 100  # per mail file (an mbox counts all its messages' attachments)


def derived_source(parent: str, name: str) -> str:
    return f"{parent}{SEP}{name}"


def parent_of(source: str) -> str:
    """The mail an attachment's source belongs to (names from ``safe_name`` never hold ``SEP``)."""
    return source.rsplit(SEP, 1)[0]


def is_attachment(sha256: str) -> bool:
    """Whether a catalog row (by its ``sha256`` field) is a mail's attachment, not a file."""
    return sha256.startswith(MARK)


def safe_name(raw: str | None, number: int) -> str:
    """A file name to show and cite: the last path part only, printable, no markup, bounded;
    ``attachment-N`` when nothing is left."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name
                   if unicodedata.category(ch)[0] != "C")  # control, format (bidi, zero-width), private
    name = re.sub(r"[<>\"`\u203a]", "_", " ".join(name.split())).lstrip(". ")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[:MAX_NAME_CHARS - len(suffix) - 1] + "." + suffix) if dot and len(suffix) <= 10 \
            else name[:MAX_NAME_CHARS]
    return name or f"attachment-{number}"


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2).pdf``, ``name (3).pdf``... if already taken; adds it to ``taken``."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem} ({n})" + (f".{suffix}" if suffix else "")
    taken.add(candidate)
    return candidate
