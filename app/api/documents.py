"""The documents endpoints' work: list, upload (+ ingest), remove.

Uploads go through the same functions as the page's Library panel (``app.ui.library``):
names are cleaned by ``safe_filename`` and files are created inside the documents folder only.
A document id is its path inside its folder, as the index lists it; ids are checked before
anything is looked up, so ``../``, absolute paths, NUL bytes and backslashes never reach the
index or the disk.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import PurePosixPath

from app.api.errors import BadRequest, NotFound

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def checked_id(document_id: str) -> str:
    """``document_id`` if it is a plain relative path, else ``BadRequest`` saying why."""
    problem = None
    if not document_id:
        problem = "is empty"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in document_id):
        problem = "contains a control character (NUL, newline, ...)"
    elif "\\" in document_id:
        problem = "contains a backslash"
    elif document_id.startswith("/") or _WINDOWS_DRIVE.match(document_id):
        problem = "is an absolute path"
    elif any(part in ("", ".", "..") for part in document_id.split("/")):
        problem = "has an empty, '.' or '..' path segment"
    if problem:
        raise BadRequest(f"The document id {document_id!r} {problem}.",
                         fix="Use a document's `id` exactly as GET /v1/documents lists it "
                         "(a path relative to its folder, like `guides/setup.md`).")
    return str(PurePosixPath(document_id))


def listing(engine) -> list[dict]:
    """Every indexed document (none when there is no index yet)."""
    from vectorstore import layout

    if layout.current_generation(engine.settings.index_path) is None:
        return []
    return [{"id": d.source, **asdict(d)} for d in engine.store.documents()]


def remove(engine, document_id: str, root: str | None) -> dict:
    """Take a document out of the index (and its file out of the documents folder, if there)."""
    from app.ui.library import remove as remove_document

    source = checked_id(document_id)
    matches = [d for d in listing(engine) if d["source"] == source and (root is None or d["root"] == root)]
    if not matches:
        raise NotFound(f"No document {source!r} in the index" + (f" under {root!r}." if root else "."),
                       fix="GET /v1/documents lists the ids.")
    if len(matches) > 1:
        folders = ", ".join(d["root"] for d in matches)
        raise BadRequest(f"{source!r} was ingested from several folders: {folders}.",
                         fix="Say which one with ?root=FOLDER.")
    folder = matches[0]["root"]
    file_deleted = remove_document(engine.settings, source, folder)
    return {"removed": source, "root": folder, "file_deleted": file_deleted}


def upload(engine, files: list[tuple[str, bytes]]) -> dict:
    """Save the files into the documents folder (clean names, never overwriting) and ingest it."""
    from app.ui.library import add_uploads
    from app.ui.uploads import Upload

    from ingest.loaders import SUPPORTED, format_of

    settings = engine.settings
    # Refused before saving: a file docchat cannot read has no business in the documents folder.
    unreadable = [name for name, _ in files if format_of(PurePosixPath(name.replace("\\", "/"))) is None]
    wanted = [Upload(name, data) for name, data in files if name not in unreadable]
    saved, summary = add_uploads(settings, wanted, embedder=engine.embedder)
    kinds = " ".join(sorted(SUPPORTED))
    rejected = saved.rejected + [(name, f"unsupported file type (docchat reads {kinds})") for name in unreadable]
    return {
        "saved": [path.relative_to(settings.docs_path).as_posix() for path in saved.saved],
        "rejected": [{"name": name, "reason": reason} for name, reason in rejected],
        "ingest": summary.to_dict() if summary is not None else None,
    }
