"""Sync folders into the index: the ingest data path, start to end.

    scan folders -> compare with the catalog (size+mtime, then sha256) -> parse and split the
    new and changed files -> embed all new chunk texts in large groups -> write one new
    generation (vectorstore.writer) -> summary

The slow steps run without the index lock: a first pass compares against a snapshot of the
live index, parses and embeds. The lock is then taken only to publish: a second pass compares
again against whatever is live by then (another ingest may have published meanwhile) and
writes, reusing the first pass's hashes, parsed documents and vectors, so it normally reads,
parses and embeds nothing. A second ingest or an upload waits seconds, not the whole embed.

Equivalent to LangChain's indexing API with a record manager in "incremental" mode, per root
folder: unchanged files are skipped without being read, a changed file's chunks are replaced
(chunks whose text did not change keep their vectors), deleted files' chunks are removed,
renamed files keep their vectors, and other roots are never touched. ``tests/test_ingest_sync.py``
proves each of these.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from app.errors import DocchatError
from ingest import attachments, loaders
from ingest.documents import ParsedDocument, UnreadableFile
from ingest.embedder import GROUP_SIZE, Embedder
from ingest.isolation import Parser
from ingest.ocr import OcrOptions
from ingest.scan import DiskFile, Scope, scopes_for, walk
from ingest.splitter import Chunk, make_splitter, split_document
from vectorstore import writer as index_writer
from vectorstore.backend import open_writer
from vectorstore.layout import file_sha256
from vectorstore.protocol import IndexWriting as IndexWriter
from vectorstore.records import FileRecord, NewChunk
from vectorstore.writer import now_iso

if TYPE_CHECKING:
    from app.backends import EmbeddingBackend
    from app.config import Settings

Progress = Callable[[dict], None]
PARSE_WORKERS = 2  # threads feeding as many parser processes: one per core


@dataclass
class SyncSummary:
    """What a sync did (or, for a dry run, would do). Sources are relative to their root."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason): unsupported types
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0  # chunks_added minus those whose vectors were reused
    seconds: float = 0.0
    roots: list[str] = field(default_factory=list)
    generation: int | None = None  # the generation written; None when nothing changed
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ingested_nothing(self) -> bool:
        """Every candidate file failed: the one case the CLI reports as an error."""
        kept = self.added or self.updated or self.unchanged or self.renamed
        return bool(self.failed) and not kept

    def to_dict(self) -> dict:
        data = asdict(self)
        data["counts"] = {name: len(data[name]) for name in
                          ("added", "updated", "unchanged", "deleted", "renamed", "skipped", "failed")}
        return data


@dataclass
class _Change:
    """A new or changed file, read and hashed, waiting to be parsed and embedded."""

    scope: Scope
    disk: DiskFile
    sha256: str
    is_new: bool
    document: ParsedDocument | None = None
    chunks: list[Chunk] = field(default_factory=list)
    old_attachments: list[str] = field(default_factory=list)  # its attachments' sources in the catalog
    reserved: set[str] = field(default_factory=set)  # files on disk named like its attachments would be
    attached: list["_Attached"] = field(default_factory=list)  # its attachments, parsed and split

    @property
    def all_chunks(self) -> list[Chunk]:
        """Its own chunks, then its attachments' (a mail's)."""
        return self.chunks + [c for attached in self.attached for c in attached.chunks]

    @property
    def record(self) -> FileRecord:
        title = self.document.title if self.document else ""
        return FileRecord(self.scope.key, self.disk.source, self.disk.size, self.disk.mtime_ns, self.sha256, title, now_iso())


@dataclass
class _Attached:
    """A mail's attachment, indexed as a document of its own (see ``ingest.attachments``)."""

    record: FileRecord
    chunks: list[Chunk]


@dataclass
class _Prepared:
    """Work of the unlocked pass that the locked pass reuses."""

    hashes: dict[tuple[Path, int, int], str] = field(default_factory=dict)  # (path, size, mtime) -> sha256
    parsed: dict[tuple[str, str, str], ParsedDocument | str] = field(default_factory=dict)  # (root, source, sha)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # content hash -> vector


def sync(settings: "Settings", paths: list[Path] | None = None, *, full: bool = False, dry_run: bool = False,
         include: list[str] | None = None, exclude: list[str] | None = None, progress: Progress | None = None,
         embedder: "EmbeddingBackend | None" = None) -> SyncSummary:
    """Bring the index in line with the folders (default: ``settings.docs_path``).

    ``embedder``: an EmbeddingBackend already loaded (the page's, the API's); default: the
    one the settings name, loaded when the first chunk needs a vector.

    Raises ``StoreError`` when another ingest holds the index past the lock timeout, when the
    index was built with another embedding model (unless ``full``) or is damaged (``full``
    rebuilds it beside the damaged one).
    """
    notes: list[str] = []
    scopes = scopes_for(paths or [_default_folder(settings, notes)], include, exclude)
    return _sync(settings, scopes, notes, full=full, dry_run=dry_run, progress=progress, embedder=embedder)


def reindex_document(settings: "Settings", source: str, root: str, *, progress: Progress | None = None,
                     embedder: "EmbeddingBackend | None" = None) -> SyncSummary:
    """Parse one indexed document again and replace its chunks, as one sync (one commit): after
    a parser or a chunking setting changed. Chunks whose text is unchanged keep their vectors."""
    if not (Path(root) / source).is_file() and (Path(root) / attachments.parent_of(source)).is_file():
        source = attachments.parent_of(source)  # an attachment is read again with its mail
    if not (Path(root) / source).is_file():
        raise DocchatError(f"{source} is no longer in {root}.", fix="Re-sync the folder to drop it from the index.")
    return _sync(settings, [Scope(Path(root), source, reparse=True)], [], progress=progress, embedder=embedder)


def _sync(settings: "Settings", scopes: list[Scope], notes: list[str], *, full: bool = False, dry_run: bool = False,
          progress: Progress | None = None, embedder: "EmbeddingBackend | None" = None) -> SyncSummary:
    started = time.perf_counter()
    report = progress or (lambda event: None)
    prepared, embed = _Prepared(), Embedder(settings, embedder)
    with open_writer(settings, full=full, read_only=True) as snapshot:  # no lock
        summary = _pass(snapshot, scopes, settings, prepared, embed, report, apply=False, prepare=not dry_run)
    if not dry_run:
        index_writer.checkpoint("embedded")
        report({"stage": "write"})
        with open_writer(settings, full=full) as writer:  # the lock: publishing only
            summary = _pass(writer, scopes, settings, prepared, embed, lambda event: None, apply=True, prepare=True)
            summary.generation = writer.commit(settings.embedding_model_name)
    summary.dry_run, summary.notes = dry_run, notes + summary.notes
    summary.chunks_embedded = embed.texts_embedded  # over both passes
    summary.roots = [scope.key for scope in scopes]
    summary.seconds = round(time.perf_counter() - started, 3)
    report({"stage": "done", "summary": summary.to_dict()})
    return summary


def _pass(writer: IndexWriter, scopes: list[Scope], settings: "Settings", prepared: _Prepared, embed: Embedder,
          report: Progress, *, apply: bool, prepare: bool) -> SyncSummary:
    """Compare every scope with ``writer``'s index; parse and embed (``prepare``); write (``apply``)."""
    summary = SyncSummary()
    if not writer.full:
        writer.check_model(settings.embedding_model_name)
    changes = []
    for scope in scopes:
        changes += _compare(writer, scope, settings, summary, prepared, report, apply)
    if prepare:
        _parse(changes, settings, summary, prepared, report)
        vectors = _embed(changes, writer, embed, summary, prepared, report)
        if apply:
            _write(changes, vectors, writer, summary)
    return summary


def _default_folder(settings: "Settings", notes: list[str]) -> Path:
    folder = settings.docs_path
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        notes.append(f"Created the documents folder {folder}: it is empty. Put documents in it, or "
                     "give folders: `docchat ingest FOLDER ...`.")
    return folder


# -- compare ----------------------------------------------------------------------------------
def _compare(writer: IndexWriter, scope: Scope, settings: "Settings", summary: SyncSummary, prepared: _Prepared,
             report: Progress, apply: bool) -> list[_Change]:
    """Classify the scope's files against its catalog; apply deletes, renames and touches.

    A mail's attachments (catalog rows without a file) follow their mail: unchanged, renamed or
    deleted with it, replaced when it is parsed again (in ``_write``)."""
    catalog, attached = _split_catalog(writer.catalog(scope.key), scope)
    found = walk(scope, settings.follow_external_symlinks)
    summary.skipped += found.skipped
    summary.failed += found.failed
    on_disk = found.files
    present = {f.source for f in on_disk}
    gone = {source: rec for source, rec in catalog.items() if source not in present}
    for parent in sorted(set(attached) - set(catalog)):  # no mail left to belong to
        _delete_attachments(writer, attached.pop(parent), summary, apply)
    named_like_attachments = [s for s in present if attachments.SEP in s]  # almost always none
    gone_by_sha = {rec.sha256: source for source, rec in gone.items()}
    to_read = []
    for disk in on_disk:
        old = catalog.get(disk.source)
        if old is not None and (old.size, old.mtime_ns) == (disk.size, disk.mtime_ns) and not scope.reparse:
            summary.unchanged.append(disk.source)  # skipped without reading
        elif loaders.format_of(Path(disk.source)) is None:  # the name in the folder, not a link's target
            summary.skipped.append((disk.source, f"unsupported file type {Path(disk.source).suffix or '(no extension)'}"))
        elif disk.size > settings.max_file_mb * 1024 * 1024:
            summary.failed.append((disk.source, f"too large ({disk.size / 1048576:.1f} MB > DOCCHAT_MAX_FILE_MB={settings.max_file_mb:g})"))
        else:
            to_read.append(disk)
    if not on_disk and not catalog:
        summary.notes.append(f"{scope.root} has no files to ingest.")
    changes = []
    for n, disk in enumerate(to_read, start=1):
        report({"stage": "scan", "file": disk.source, "done": n, "total": len(to_read)})
        try:
            sha = _hash(disk, prepared)
        except OSError as exc:
            summary.failed.append((disk.source, f"unreadable ({exc.strerror or exc})"))
            continue
        old = catalog.get(disk.source)
        record = FileRecord(scope.key, disk.source, disk.size, disk.mtime_ns, sha)
        if old is not None and old.sha256 == sha and not scope.reparse:
            summary.unchanged.append(disk.source)
            if apply:
                writer.touch_file(record)
        elif old is None and sha in gone_by_sha:
            old_source = gone_by_sha.pop(sha)
            del gone[old_source]
            summary.renamed.append((old_source, disk.source))
            if apply:
                _rename(writer, catalog[old_source], record)
            _rename_attachments(writer, attached.get(old_source, []), old_source, record, summary, apply)
        else:
            (summary.added if old is None else summary.updated).append(disk.source)
            reserved = {s for s in named_like_attachments if attachments.parent_of(s) == disk.source}
            old_attachments = [r.source for r in attached.get(disk.source, [])]
            changes.append(_Change(scope, disk, sha, old is None, old_attachments=old_attachments, reserved=reserved))
    for source in sorted(gone):
        summary.deleted.append(source)
        if apply:
            summary.chunks_deleted += writer.delete_file(scope.key, source)
        _delete_attachments(writer, attached.get(source, []), summary, apply)
    return changes


def _split_catalog(rows: dict[str, FileRecord], scope: Scope) -> tuple[dict[str, FileRecord], dict[str, list[FileRecord]]]:
    """The scope's files, and its mails' attachments by the mail's source."""
    files: dict[str, FileRecord] = {}
    attached: dict[str, list[FileRecord]] = {}
    for source, record in rows.items():
        if attachments.is_attachment(record.sha256):
            parent = attachments.parent_of(source)
            if scope.covers(parent):
                attached.setdefault(parent, []).append(record)
        elif scope.covers(source):
            files[source] = record
    return files, attached


def _delete_attachments(writer: IndexWriter, records: list[FileRecord], summary: SyncSummary, apply: bool) -> None:
    for record in sorted(records, key=lambda r: r.source):
        summary.deleted.append(record.source)
        if apply:
            summary.chunks_deleted += writer.delete_file(record.root, record.source)


def _rename_attachments(writer: IndexWriter, records: list[FileRecord], old_parent: str, parent: FileRecord,
                        summary: SyncSummary, apply: bool) -> None:
    """A renamed mail's attachments move with it ("old.eml › a.pdf" -> "new.eml › a.pdf"), vectors kept."""
    for old in sorted(records, key=lambda r: r.source):
        source = attachments.derived_source(parent.source, old.source[len(old_parent) + len(attachments.SEP):])
        summary.renamed.append((old.source, source))
        if apply:
            writer.rename_file(old.source, FileRecord(parent.root, source, old.size, parent.mtime_ns, old.sha256,
                                                      old.title, now_iso()))


def _hash(disk: DiskFile, prepared: _Prepared) -> str:
    key = (disk.path, disk.size, disk.mtime_ns)
    if key not in prepared.hashes:
        prepared.hashes[key] = file_sha256(disk.path)
    return prepared.hashes[key]


def _rename(writer: IndexWriter, old: FileRecord, record: FileRecord) -> None:
    # A title made from the old file name follows the new name; a title the document states stays.
    title = loaders.stem_title(record.source) if old.title == loaders.stem_title(old.source) else old.title
    record.title, record.ingested_at = title, now_iso()
    writer.rename_file(old.source, record, title=title)


# -- parse and split --------------------------------------------------------------------------
def _parse(changes: list[_Change], settings: "Settings", summary: SyncSummary, prepared: _Prepared,
           report: Progress) -> None:
    """Parse and split every changed file; a file that fails is reported and keeps its old chunks."""
    splitter = make_splitter(settings.chunk_size, settings.chunk_overlap)

    def parse_one(change: _Change) -> ParsedDocument | str:
        key = (change.scope.key, change.disk.source, change.sha256)
        if key not in prepared.parsed:
            prepared.parsed[key] = _parse_file(parser, change)
        return prepared.parsed[key]

    # In this order, PARSE_WORKERS at a time: what a per-file progress display needs to know.
    report({"stage": "parse", "done": 0, "total": len(changes), "files": [c.disk.source for c in changes],
            "workers": PARSE_WORKERS})
    with Parser(settings.parse_timeout_s, workers=PARSE_WORKERS, ocr=ocr_options(settings),
                chunk_size=settings.chunk_size) as parser, ThreadPoolExecutor(max_workers=PARSE_WORKERS) as pool:
        for n, (change, result) in enumerate(zip(changes, pool.map(parse_one, changes)), start=1):
            event = {"stage": "parse", "file": change.disk.source, "done": n, "total": len(changes)}
            if isinstance(result, str):
                summary.failed.append((change.disk.source, result))
                (summary.added if change.is_new else summary.updated).remove(change.disk.source)
                report({**event, "error": result})
                continue
            change.document = result
            summary.notes += [f"{change.disk.source}: {note}" for note in result.notes]
            change.chunks = split_document(result, root=change.scope.key, source=change.disk.source,
                                           splitter=splitter, embed_headings=settings.embed_headings)
            _split_attachments(change, splitter, settings, summary)
            report({**event, "chunks": len(change.all_chunks)})


def _split_attachments(change: _Change, splitter, settings: "Settings", summary: SyncSummary) -> None:
    """Each attachment of a parsed mail becomes its own document ("mail.eml › report.pdf"); a bad
    one is reported as failed, and the mail and its other attachments are still indexed."""
    parent, root = change.disk.source, change.scope.key
    taken = {source[len(parent) + len(attachments.SEP):] for source in change.reserved}
    new = []
    for attachment in change.document.attachments:
        name = attachments.unique_name(attachment.name, taken) if attachment.name in taken else attachment.name
        source = attachments.derived_source(parent, name)
        if attachment.document is None:
            summary.failed.append((source, attachment.error or "not readable"))
            continue
        summary.notes += [f"{source}: {note}" for note in attachment.document.notes]
        record = FileRecord(root, source, attachment.size, change.disk.mtime_ns, attachments.MARK + attachment.sha256,
                            attachment.document.title, now_iso())
        chunks = split_document(attachment.document, root=root, source=source, splitter=splitter,
                                embed_headings=settings.embed_headings)
        if not chunks:
            continue
        change.attached.append(_Attached(record, chunks))
        new.append(source)
        (summary.updated if source in change.old_attachments else summary.added).append(source)
    summary.deleted += sorted(set(change.old_attachments) - set(new))


def _parse_file(parser: Parser, change: _Change) -> ParsedDocument | str:
    """The parsed document, or why the file cannot be ingested."""
    try:
        document = parser.parse(loaders.format_of(Path(change.disk.source)), change.disk.path)
    except UnreadableFile as exc:
        return str(exc)
    if document.is_empty:
        if document.notes:  # e.g. a scanned PDF without Tesseract: "pages 1, 2 need OCR ... install ..."
            return "no text found: " + "; ".join(document.notes)
        return "empty: no text found"
    return document


def ocr_options(settings: "Settings") -> OcrOptions:
    return OcrOptions(settings.ocr_languages, settings.ocr_max_pages, settings.ocr_page_timeout_s, settings.ocr)


# -- embed ------------------------------------------------------------------------------------
def _embed(changes: list[_Change], writer: IndexWriter, embed: Embedder, summary: SyncSummary,
           prepared: _Prepared, report: Progress) -> dict[str, np.ndarray]:
    """Vectors by content hash: reused from the file's old chunks where the text is unchanged
    (or from the unlocked pass), else embedded, each distinct text once, in large groups."""
    vectors = prepared.vectors
    for change in changes:
        if change.document is not None and not change.is_new:
            for source in [change.disk.source, *change.old_attachments]:
                vectors.update(writer.stored_vectors(change.scope.key, source))
    todo: dict[str, str] = {}
    for change in changes:
        for chunk in change.all_chunks:
            if chunk.content_hash not in vectors:
                todo.setdefault(chunk.content_hash, chunk.embed_text)
    hashes, texts = list(todo), list(todo.values())
    per_file = _FileCounts(changes, hashes)
    report({"stage": "embed", "done": 0, "total": len(texts), "files": per_file.at(0)})
    for start in range(0, len(texts), GROUP_SIZE):
        group = embed(texts[start:start + GROUP_SIZE])
        vectors.update(zip(hashes[start:start + GROUP_SIZE], group))
        done = min(start + GROUP_SIZE, len(texts))
        report({"stage": "embed", "done": done, "total": len(texts), "files": per_file.at(done)})
    summary.chunks_embedded = len(texts)
    return vectors


class _FileCounts:
    """Per file, how many of the texts it waits for are embedded once the first ``done`` are:
    {source: [embedded, to embed]}, for the files whose count changed since the last call."""

    def __init__(self, changes: list[_Change], hashes: list[str]):
        position = {h: i for i, h in enumerate(hashes)}
        self.waiting = {c.disk.source: sorted({position[k.content_hash] for k in c.all_chunks if k.content_hash in position})
                        for c in changes if c.document is not None}  # fmt: skip
        self.last: dict[str, int] = {}

    def at(self, done: int) -> dict[str, list[int]]:
        counts = {source: bisect_left(positions, done) for source, positions in self.waiting.items()}
        changed = {s: [n, len(self.waiting[s])] for s, n in counts.items() if self.last.get(s) != n}
        self.last = counts
        return changed


# -- write ------------------------------------------------------------------------------------
def _write(changes: list[_Change], vectors: dict[str, np.ndarray], writer: IndexWriter, summary: SyncSummary) -> None:
    """Replace each parsed file's chunks in the writer's private copy of the index."""
    for change in changes:
        if change.document is None or not change.chunks:
            continue  # failed to parse: its old chunks, if any, stay
        for source in ([] if change.is_new else [change.disk.source]) + change.old_attachments:
            summary.chunks_deleted += writer.delete_file(change.scope.key, source)
        for record, chunks in [(change.record, change.chunks), *((a.record, a.chunks) for a in change.attached)]:
            rows = np.array([vectors[c.content_hash] for c in chunks], dtype=np.float32).reshape(len(chunks), -1)
            summary.chunks_added += writer.add_file(record, [NewChunk(c.text, c.metadata) for c in chunks], rows)


# -- removing one document (UI) ---------------------------------------------------------------
def remove_document(settings: "Settings", source: str, root: str | None = None) -> int:
    """Remove one file's chunks (a mail's with its attachments') from the index; returns how
    many chunks left. A mail's attachment is refused: it is indexed as long as its mail is.

    Only the index changes: if the file is still in its folder, the next sync of that folder
    adds it again, so the UI deletes the file itself as well.
    """
    with open_writer(settings) as writer:
        rows = [r for r in writer.roots_of(source) if root is None or r == root]
        if not rows:
            raise DocchatError(f"{source!r} is not in the index.", fix="`docchat search` or the UI's document list shows what is.")
        if len(rows) > 1:
            raise DocchatError(f"{source!r} was ingested from several folders: {', '.join(rows)}.",
                               fix="Say which folder (root) to remove it from.")
        catalog = writer.catalog(rows[0])
        if attachments.is_attachment(catalog[source].sha256):
            raise DocchatError(f"{source!r} is an attachment of {attachments.parent_of(source)!r}: it is indexed "
                               "as long as that mail is.", fix="Remove the mail (its attachments go with it).")
        removed = 0
        for name in [source, *(s for s, r in catalog.items()
                               if attachments.is_attachment(r.sha256) and attachments.parent_of(s) == source)]:
            removed += writer.delete_file(rows[0], name)
        writer.commit(settings.embedding_model_name)
    return removed
