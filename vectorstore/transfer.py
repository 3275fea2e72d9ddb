"""Copy a whole index between the local folder and PostgreSQL, vectors included (no re-embedding),
and the conversations with it.

The target is rebuilt as one write (the local writer's new generation, or one PostgreSQL
transaction), so an interrupted copy leaves the target as it was. Conversations are added to
the target's, each thread with its messages, feedback and restriction under its own id (one
transaction per thread); a thread the target already has is left as it is there, so running the
copy again after an interruption finishes it without duplicates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from app.errors import StoreError
from vectorstore.backend import Kind, open_store, open_writer
from vectorstore.records import NewChunk

if TYPE_CHECKING:
    from app.config import Settings


def copy_index(settings: "Settings", *, source: Kind, target: Kind, replace: bool = False,
               progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Copy every file, chunk and vector of the ``source`` index into ``target``.

    Refuses to overwrite a target that already holds documents unless ``replace``. Returns
    counts: files, chunks, model.
    """
    if source == target:
        raise StoreError(f"Source and target are both the {source} index.", fix="Copy from one kind to the other.")
    from app.config import with_overrides

    reader = open_store(settings, check_model=False, kind=source)
    try:
        documents = reader.documents()
        _check_target(settings, target, replace)
        # The target is stamped with the source's model: its vectors are the source's.
        stamped = with_overrides(settings, embedding_model=reader.model_name)
        with open_writer(settings, read_only=True, kind=source) as snapshot:
            catalogs = {root: snapshot.catalog(root) for root in {d.root for d in documents}}
        chunks = 0
        with open_writer(stamped, full=True, kind=target) as writer:
            for n, document in enumerate(documents, start=1):
                hits = reader.chunks_of(document.source, document.root)
                vectors = reader.vectors([h.chunk_id for h in hits])
                record = catalogs[document.root][document.source]
                chunks += writer.add_file(record, [NewChunk(h.text, h.metadata) for h in hits], vectors)
                if progress:
                    progress(n, len(documents), document.source)
            # ... and with how they were computed (runtime and precision), where the store records it.
            writer.commit(reader.model_name, embedding=getattr(reader, "embedding", None))
    finally:
        reader.close()
    return {"files": len(documents), "chunks": chunks, "model": reader.model_name}


def _check_target(settings: "Settings", target: Kind, replace: bool) -> None:
    try:
        existing = open_store(settings, check_model=False, kind=target)
    except StoreError:
        return  # no index there yet (or a damaged one, which the copy replaces)
    try:
        count = len(existing.documents())
    finally:
        existing.close()
    if count and not replace:
        raise StoreError(f"The {target} index already holds {count} documents; nothing was copied.",
                         fix="Add --replace to overwrite it with the copy.")


def copy_threads(settings: "Settings", *, source: Kind, target: Kind) -> dict:
    """Add the ``source`` store's conversation threads to the ``target``'s; returns counts:
    threads copied, threads the target already had (kept as they are)."""
    from app.config import with_overrides
    from app.engine.threads_pg import open_threads

    if source == target:
        raise StoreError(f"Source and target are both the {source} conversations.", fix="Copy from one kind to the other.")
    local = with_overrides(settings, database_url=None)
    if source == "local" and not local.threads_db_path.exists():
        return {"threads": 0, "kept": 0}  # no conversation was ever saved here
    stores = {"local": lambda: open_threads(local), "postgres": lambda: open_threads(settings)}
    reader, writer = stores[source](), stores[target]()
    present = {t.id for t in writer.list()}
    threads = list(reversed(reader.list()))  # oldest first, so the target lists them in the same order
    for thread in threads:
        if thread.id not in present:
            writer.restore(reader.export(thread.id))
    kept = sum(t.id in present for t in threads)
    return {"threads": len(threads) - kept, "kept": kept}
