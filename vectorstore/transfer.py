"""Copy a whole index between the local folder and PostgreSQL, vectors included (no re-embedding).

The target is rebuilt as one write (the local writer's new generation, or one PostgreSQL
transaction), so an interrupted copy leaves the target as it was.
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
