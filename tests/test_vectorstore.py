"""The index on disk: search and catalog reads, and refusing anything this app did not write.

Real FAISS, real SQLite, the packaged embedding model; the index is written by the one writer
through a real sync of a small folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.config import with_overrides
from app.errors import StoreError
from ingest.sync import sync
from vectorstore import Store, layout

DOCS = {
    "guides/install.md": "# Install\n\nDownload the installer and run it with administrator rights on Windows.",
    "guides/upgrade.md": "# Upgrade\n\nBack up the configuration folder before upgrading to a new major version.",
    "faq.md": "# FAQ\n\nThe licence allows commercial use in companies of any size without fees.",
    "notes.txt": "Meeting notes: the quarterly budget review moved to the second Thursday.",
}


@pytest.fixture
def index(settings, embeddings, tmp_path):
    docs = tmp_path / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    sync(settings, [docs], embedder=embeddings)
    return settings, docs


def _gen_dir(settings):
    return layout.current_generation(settings.index_path)


def _segment_file(settings, suffix: str):
    """The live generation's (only) segment's vectors (.faiss) or rows (.sqlite)."""
    return next(_gen_dir(settings).glob(f"seg-*.{suffix}"))


def test_no_index_yet_says_how_to_make_one(settings):
    with pytest.raises(StoreError, match="No index yet") as error:
        Store.open(settings)
    assert "docchat ingest" in str(error.value)


def test_dense_search_ranks_by_cosine_and_filters_by_source_and_folder(index, embeddings):
    settings, docs = index
    store = Store.open(settings)
    assert len(store) == 4 and store.dim == 384 and store.model_name == settings.embedding_model_name
    query = embeddings.embed_query("how do I install it on windows")
    hits = store.search(query, 4)
    assert hits[0].source == "guides/install.md"
    assert hits[0].metadata["root"] == str(docs)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert -1.0 <= hits[-1].score <= hits[0].score <= 1.0
    assert {h.source for h in store.search(query, 4, sources=["guides/"])} == {"guides/install.md", "guides/upgrade.md"}
    assert [h.source for h in store.search(query, 4, sources=["faq.md"])] == ["faq.md"]
    assert store.search(query, 4, sources=["nothing/"]) == []


def test_keyword_search_uses_bm25_and_survives_punctuation(index):
    store = Store.open(index[0])
    assert store.keyword_search("budget?? (review)", 2)[0].source == "notes.txt"
    assert store.keyword_search("licence", 3, sources=["guides/"]) == []
    assert store.keyword_search('"; DROP TABLE chunks; --', 3) == []
    assert store.keyword_search("", 3) == []
    # stop words alone still search; next to a real word they do not drown it
    assert store.keyword_search("what is the budget", 1)[0].source == "notes.txt"


def test_has_term_tells_whether_any_chunk_has_a_word(index):
    store = Store.open(index[0])
    assert store.has_term("budget") and store.has_term("Budget")
    assert not store.has_term("patroni")
    assert not store.has_term("licence", sources=["guides/"])
    assert not store.has_term('"; DROP TABLE chunks; --') and not store.has_term("")
    assert store.has_term("quarterly budget") and store.has_term("Quarterly-Budget")  # a phrase ...
    assert not store.has_term("budget quarterly")  # ... in that order, side by side


def test_vectors_documents_and_chunks_of(index, embeddings):
    store = Store.open(index[0])
    hit = store.chunks_of("faq.md")[0]
    vector = store.vectors([hit.chunk_id])[0]
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert [d.source for d in store.documents()] == sorted(DOCS)
    assert all(d.chunks == 1 and d.size > 0 and d.ingested_at for d in store.documents())


def test_opening_with_another_embedding_model_names_both_and_the_fix(index):
    settings = with_overrides(index[0], embedding_model="BAAI/bge-small-en-v1.5")
    with pytest.raises(StoreError) as error:
        Store.open(settings)
    message = str(error.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in message and "BAAI/bge-small-en-v1.5" in message
    assert "384" in message and "docchat ingest --full" in message
    # A sync with the other model refuses before loading anything, and changes nothing.
    with pytest.raises(StoreError, match="docchat ingest --full"):
        sync(settings, [index[1]])


@pytest.mark.parametrize("victim", ["catalog", "faiss", "sqlite"])
def test_a_changed_data_file_is_refused_with_the_rebuild_command(index, victim):
    path = _gen_dir(index[0]) / layout.DATABASE if victim == "catalog" else _segment_file(index[0], victim)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as error:
        Store.open(index[0])
    assert str(path) in str(error.value) and "docchat ingest --full" in str(error.value)


def test_an_index_from_before_segments_says_rebuild_once_not_damaged(index):
    settings = index[0]
    gen_dir = _gen_dir(settings)
    old = {"generation": 1, "dim": 384, "model": settings.embedding_model_name,
           "files": {"vectors.faiss": "0" * 64, layout.DATABASE: "0" * 64}}  # the layout before segments
    signed = {"body": old, "hmac": layout._signature(old, layout.index_key(settings.data_path))}  # as it signed
    (gen_dir / layout.MANIFEST).write_text(json.dumps(signed))
    with pytest.raises(StoreError) as error:
        Store.open(settings)
    assert "earlier version of docchat" in str(error.value) and "damaged" not in str(error.value)
    assert "docchat ingest --full" in error.value.fix


def test_a_truncated_vectors_file_is_refused(index):
    path = _segment_file(index[0], "faiss")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(StoreError, match="checksum"):
        Store.open(index[0])


def test_a_manifest_edited_by_hand_or_signed_by_another_install_is_refused(index):
    settings = index[0]
    manifest = _gen_dir(settings) / layout.MANIFEST
    signed = json.loads(manifest.read_text())
    signed["body"]["model"] = "something/else"
    manifest.write_text(json.dumps(signed))
    with pytest.raises(StoreError, match="not written by this docchat install"):
        Store.open(settings)

    signed["body"]["model"] = settings.embedding_model_name
    manifest.write_text(json.dumps(signed))
    Store.open(settings)  # restored: opens again
    (settings.data_path / layout.KEY_FILE).unlink()  # another install's key
    with pytest.raises(StoreError, match="not written by this docchat install"):
        Store.open(settings)


def test_the_install_key_is_private(index):
    key = index[0].data_path / layout.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600


def test_vectors_and_rows_that_disagree_are_refused_even_when_signed(index):
    settings = index[0]
    gen = _gen_dir(settings)
    import sqlite3

    db = sqlite3.connect(_segment_file(settings, "sqlite"))
    db.execute("DELETE FROM chunks WHERE source = 'faq.md'")
    db.commit()
    db.close()
    body = json.loads((gen / layout.MANIFEST).read_text())["body"]
    layout.write_manifest(gen, body, layout.index_key(settings.data_path))  # as if a bug wrote it
    with pytest.raises(StoreError, match="inconsistent .4 vectors but 3 chunk rows.") as error:
        Store.open(settings)
    assert "docchat ingest --full" in str(error.value)


def test_full_rebuild_repairs_a_damaged_index(index, embeddings):
    settings, docs = index
    (_gen_dir(settings) / layout.DATABASE).write_bytes(b"garbage")
    with pytest.raises(StoreError):
        sync(settings, [docs], embedder=embeddings)  # refuses to build on a damaged base
    summary = sync(settings, [docs], full=True, embedder=embeddings)
    assert len(summary.added) == 4
    assert len(Store.open(settings)) == 4
    # The live generation, and the one before it, kept for readers that opened it a moment ago.
    assert sorted(p.name for p in settings.index_path.glob("gen-*")) == ["gen-000001", _gen_dir(settings).name]
