"""The document actions behind the Documents panel: add uploads, remove, re-sync.

Plain functions over settings and paths (no Streamlit), so the page stays a thin caller
and the tests can drive them with real files.
"""

from __future__ import annotations

from pathlib import Path

from app.ui.uploads import SavedUploads, Upload, save_uploads


def add_uploads(settings, uploads: list[Upload], *, embeddings=None, progress=None):
    """Save the uploads into the documents folder and ingest it. Returns (saved, summary).

    ``summary`` is None when nothing was saved (every file refused).
    """
    saved: SavedUploads = save_uploads(uploads, settings.docs_path, settings.upload_max_mb)
    if not saved.saved:
        return saved, None
    return saved, sync_folder(settings, embeddings=embeddings, progress=progress)


def sync_folder(settings, *, embeddings=None, progress=None):
    """Bring the index in line with the documents folder: new and changed files in, removed out."""
    from ingest.sync import sync

    settings.docs_path.mkdir(parents=True, exist_ok=True)
    return sync(settings, [settings.docs_path], progress=progress, embeddings=embeddings)


def remove(settings, source: str, root: str) -> bool:
    """Take a document out of the index; delete its file only if the app owns it.

    Files in the documents folder were put there by the app (uploads, samples), so they
    are deleted; a file in a folder the user ingested from the command line is the user's
    and stays on disk. Returns True when the file was deleted.
    """
    from ingest.sync import remove_document

    remove_document(settings, source, root)
    path = (Path(root) / source).resolve()
    docs = settings.docs_path.resolve()
    if path.is_relative_to(docs) and path.is_file():
        path.unlink()
        return True
    return False
