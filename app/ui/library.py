"""The document actions behind the Documents panel: add uploads, remove, re-sync.

Plain functions over settings and paths (no Streamlit), so the page stays a thin caller
and the tests can drive them with real files.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.ui.uploads import SavedUploads, Upload, save_uploads


def add_uploads(settings, uploads: list[Upload], *, embedder=None, progress=None, on_saved=None):
    """Save the uploads into the documents folder and ingest it. Returns (saved, summary).

    ``summary`` is None when nothing was saved (every file refused). An upload the ingest
    skipped is listed in ``saved.rejected`` with the reason, so the page names it.
    ``on_saved(saved)`` is called once the files are saved, before the ingest starts.
    """
    saved: SavedUploads = save_uploads(uploads, settings.docs_path, settings.upload_max_mb)
    if on_saved is not None:
        on_saved(saved)
    if not saved.saved:
        return saved, None
    summary = sync_folder(settings, embedder=embedder, progress=progress)
    uploaded = {path.relative_to(settings.docs_path).as_posix() for path in saved.saved}
    saved.rejected += [(source, reason) for source, reason in summary.skipped if source in uploaded]
    return saved, summary


def sync_folder(settings, *, embedder=None, progress=None):
    """Bring the index in line with the documents folder: new and changed files in, removed out."""
    from ingest.sync import sync

    settings.docs_path.mkdir(parents=True, exist_ok=True)
    return sync(settings, [settings.docs_path], progress=progress, embedder=embedder)


def reindex(settings, source: str, root: str, *, embedder=None):
    """Read one document again and replace its passages in one commit (ingest.sync.reindex_document)."""
    from ingest.sync import reindex_document

    return reindex_document(settings, source, root, embedder=embedder)


def remove(settings, source: str, root: str) -> bool:
    """Take a document out of the index; delete its file only if the app owns it.

    Files in the documents folder were put there by the app (uploads, samples), so they
    are deleted; a file in a folder the user ingested from the command line is the user's
    and stays on disk. Returns True when the file was deleted.
    """
    from ingest.sync import remove_document

    remove_document(settings, source, root)
    return _delete_own_entry(Path(root) / source, settings.docs_path)


def _delete_own_entry(path: Path, docs: Path) -> bool:
    """Delete the folder entry ``path`` if it sits in the documents folder.

    Only the entry itself goes: for a symbolic link that is the link, never the file it
    points to (which may be anyone's), and a folder reached through a link is not "inside".
    """
    try:
        folder = path.parent.resolve()
        entry = folder / path.name
        if not folder.is_relative_to(docs.resolve()) or not (entry.is_symlink() or entry.is_file()):
            return False
        entry.unlink()  # unlink() on a link removes the link
    except (OSError, ValueError):
        return False
    return True


STATUS_FILE = "library-status.json"  # in the data folder: why files are not in the index


def save_status(settings, saved, summary) -> None:
    """Remember, per file, why the last ingest left it out (failed or skipped, with the
    reason), so the Library page can say so after a restart. Files it indexed are cleared."""
    status = load_status(settings)
    if summary is not None:
        for source in [*summary.added, *summary.updated, *summary.deleted]:
            status.pop(source, None)
        status.update({source: {"status": "failed", "reason": reason} for source, reason in summary.failed})
        status.update({source: {"status": "skipped", "reason": reason} for source, reason in summary.skipped})
    for name, reason in saved.rejected if saved else []:
        status[name] = {"status": "not added", "reason": reason}
    try:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        (settings.data_path / STATUS_FILE).write_text(json.dumps(status, indent=1, ensure_ascii=False))
    except OSError:  # a read-only data folder: the page still shows this run's report
        pass


def load_status(settings) -> dict[str, dict]:
    try:
        data = json.loads((settings.data_path / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
