"""Saving uploaded files into the documents folder, safely.

The browser sends a name and bytes; both are untrusted. The name is reduced to a safe
basename (see ``safe_filename``), the file is created exclusively so an existing document
is never overwritten, and anything over ``DOCCHAT_UPLOAD_MAX_MB`` or of a type docchat cannot
read is refused before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.ui.sanitize import safe_filename, unique_path
from ingest.loaders import SUPPORTED, format_of


@dataclass
class Upload:
    """One file as the browser sent it."""

    name: str
    data: bytes


@dataclass
class SavedUploads:
    """What happened to a batch of uploads: saved paths (``names``: each one's name as sent),
    and (name, reason) for the rest."""

    saved: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def save_uploads(uploads: list[Upload], folder: Path, max_mb: float) -> SavedUploads:
    """Write each upload into ``folder`` under a sanitised, unused name."""
    folder.mkdir(parents=True, exist_ok=True)
    result = SavedUploads()
    limit = int(max_mb * 1024 * 1024)
    for upload in uploads:
        if len(upload.data) > limit:
            size_mb = len(upload.data) / 1024 / 1024
            result.rejected.append(
                (upload.name, f"{size_mb:.1f} MB is over the {max_mb:g} MB limit (DOCCHAT_UPLOAD_MAX_MB)")
            )
            continue
        name = safe_filename(upload.name)
        if format_of(Path(name)) is None:
            result.rejected.append((upload.name, _unsupported(name)))
            continue
        result.saved.append(_write_new(folder, name, upload.data))
        result.names.append(upload.name)
    return result


def _unsupported(name: str) -> str:
    kinds = " ".join(sorted(SUPPORTED))
    return f"docchat cannot read {Path(name).suffix or 'files without an extension'} files (it reads {kinds})"


def _write_new(folder: Path, name: str, data: bytes) -> Path:
    # "x" mode: if another upload took the name between the check and the open, try the next.
    while True:
        path = unique_path(folder, name)
        try:
            with open(path, "xb") as out:
                out.write(data)
            return path
        except FileExistsError:
            continue
