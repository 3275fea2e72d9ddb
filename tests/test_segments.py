"""Commits that cost what changed: immutable segments linked between generations, a delete
list, merges, and approximate (IVF) search past a size threshold.

Real FAISS and SQLite through the one writer; vectors are random unit rows (no model needed:
what is under test is where they are stored and that search still finds exactly the live ones).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from app.errors import StoreError
from vectorstore import Store, layout, postings, segments
from vectorstore.records import FileRecord, NewChunk
from vectorstore.writer import IndexWriter

DIM = 16
RNG = np.random.default_rng(7)


def unit(n: int) -> np.ndarray:
    rows = RNG.normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def put(writer: IndexWriter, source: str, vectors: np.ndarray, word: str = "plain") -> None:
    record = FileRecord("root", source, 10, 1, f"sha-{source}-{word}", title=source)
    chunks = [NewChunk(f"{word} chunk {i} of {source}", {"source": source, "position": i,
                                                           "content_hash": f"{source}-{word}-{i}"})
              for i in range(len(vectors))]
    writer.add_file(record, chunks, vectors)


def commit(settings, **files) -> dict[str, np.ndarray]:
    with IndexWriter(settings) as writer:
        for source, vectors in files.items():
            put(writer, source, vectors)
        writer.commit("test-model")
    return files


def live_files(settings) -> list[str]:
    return sorted(p.name for p in layout.current_generation(settings.index_path).iterdir())


def test_a_one_file_commit_links_the_old_segment_and_writes_only_that_file(settings):
    first = commit(settings, **{f"f{i}.md": unit(50) for i in range(4)})
    before = layout.current_generation(settings.index_path)
    old_segment = next(before.glob("seg-*.faiss"))
    reader = Store.open(settings, check_model=False)

    replaced = commit(settings, **{"f1.md": unit(3)})["f1.md"]
    after = layout.current_generation(settings.index_path)
    linked = after / old_segment.name
    assert os.stat(linked).st_ino == os.stat(old_segment).st_ino  # the same bytes, not a copy
    new_vectors = [p for p in after.glob("seg-*.faiss") if not (before / p.name).exists()]
    assert len(new_vectors) == 1 and new_vectors[0].stat().st_size < old_segment.stat().st_size / 10

    store = Store.open(settings, check_model=False)
    assert len(store) == 153 and {d.source: d.chunks for d in store.documents()}["f1.md"] == 3
    assert store._segments[0] is reader._segments[0]  # the reader did not load the old segment again
    assert store.search(replaced[2], 1)[0].text == "plain chunk 2 of f1.md"
    assert all(hit.text != "plain chunk 7 of f1.md" for hit in store.search(first["f1.md"][7], 5))  # deleted
    assert len(store.chunks_of("f1.md")) == 3 and len(store.keyword_search("f1", 10)) == 3
    # The generation before stays readable for a reader that had just looked it up.
    assert len(reader) == 200 and reader.search(first["f1.md"][7], 1)[0].text == "plain chunk 7 of f1.md"


def test_deletes_renames_and_merges_keep_search_exact_and_segments_few(settings):
    expected: dict[str, np.ndarray] = {}
    for i in range(segments.MAX_SEGMENTS + 3):  # one segment per commit, until merges start
        expected.update(commit(settings, **{f"f{i}.md": unit(5)}))
    with IndexWriter(settings) as writer:
        writer.delete_file("root", "f0.md")
        writer.rename_file("f1.md", FileRecord("root", "g1.md", 10, 1, "sha-f1.md-plain", title="f1.md"))
        writer.commit("test-model")
    expected.pop("f0.md")
    expected["g1.md"] = expected.pop("f1.md")

    store = Store.open(settings, check_model=False)
    assert len(store._segments) <= segments.MAX_SEGMENTS
    assert sorted(d.source for d in store.documents()) == sorted(expected)
    assert len(store) == 5 * len(expected)
    for source, vectors in expected.items():
        hit = store.search(vectors[3], 1)[0]
        assert hit.source == source and hit.score == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(store.vectors([hit.chunk_id])[0], vectors[3], atol=1e-6)
    assert store.search(unit(1)[0], 3, sources=["g1.md"])[0].source == "g1.md"
    assert not store.keyword_search("f0", 5) and store.has_term("plain") and not store.has_term("absent")
    # Old generations are collected; the segments they alone used go with them.
    gens = sorted(settings.index_path.glob("gen-*"))
    assert len(gens) <= 2 and gens[-1] == layout.current_generation(settings.index_path)


def test_a_big_segment_is_searched_approximately_with_deletes_honoured(settings, monkeypatch):
    monkeypatch.setattr(segments, "APPROXIMATE_FROM", 2000)
    vectors = unit(3000)
    commit(settings, **{f"f{i}.md": vectors[i * 100:(i + 1) * 100] for i in range(30)})
    with IndexWriter(settings) as writer:
        writer.delete_file("root", "f0.md")
        writer.commit("test-model")
    store = Store.open(settings, check_model=False)
    import faiss

    assert isinstance(faiss.downcast_index(store._segments[0].index.index), faiss.IndexIVF)
    queries = unit(50)
    live = vectors[100:]
    exact = np.argsort(-(queries @ live.T), axis=1)[:, :10] + 100
    recall = []
    for query, truth in zip(queries, exact):
        hits = store.search(query, 10)
        found = {int(h.metadata["content_hash"].split("-")[0][1:-3]) * 100 + int(h.metadata["content_hash"].rsplit("-", 1)[1])
                 for h in hits}
        assert all(h.source != "f0.md" for h in hits)
        recall.append(len(found & set(truth.tolist())) / 10)
    assert np.mean(recall) >= 0.9


def test_a_search_restricted_to_one_document_of_a_big_segment_is_exact(settings, monkeypatch):
    """Choosing one document must not lose its best passages to IVF lists the query does not
    probe (at 100k chunks, one 1,000-chunk folder's recall@10 was 0.66)."""
    monkeypatch.setattr(segments, "APPROXIMATE_FROM", 2000)
    vectors = unit(3000)
    commit(settings, **{f"f{i}.md": vectors[i * 100:(i + 1) * 100] for i in range(30)})
    store = Store.open(settings, check_model=False)
    for query in unit(20):
        truth = np.argsort(-(vectors[700:800] @ query))[:10]  # f7.md's own best ten, in order
        hits = store.search(query, 10, sources=["f7.md"])
        assert [int(h.metadata["position"]) for h in hits] == truth.tolist()
        assert all(h.source == "f7.md" for h in hits)


def test_deleting_every_file_leaves_an_empty_index_that_still_answers(settings):
    commit(settings, **{"a.md": unit(4), "b.md": unit(4)})
    with IndexWriter(settings) as writer:
        writer.delete_file("root", "a.md")
        writer.delete_file("root", "b.md")
        writer.commit("test-model")
    store = Store.open(settings, check_model=False)
    assert len(store) == 0 and store.documents() == [] and store.search(unit(1)[0], 3) == []
    assert store.keyword_search("plain", 3) == [] and not list(layout.current_generation(settings.index_path).glob("seg-*"))
    commit(settings, **{"c.md": unit(2)})
    assert [d.source for d in Store.open(settings, check_model=False).documents()] == ["c.md"]


def test_keyword_ranking_after_an_edit_equals_a_fresh_index(settings, tmp_path):
    """An edited file sits alone in a small new segment; its words must weigh what they weigh in
    the whole index (FTS5's bm25() alone gave them ~0 there: every chunk of it holds them)."""
    from app.config import with_overrides

    def texts(edited: bool) -> dict[str, list[str]]:
        files = {f"common{i}.md": [f"the table holds an index of chunk {i} {j}" for j in range(5)] for i in range(5)}
        files["rare.md"] = ["varroa mites in the hive table"] + (["an edited line"] if edited else [])
        return files

    def write(target, files):
        with IndexWriter(target) as writer:
            for source, lines in files.items():
                chunks = [NewChunk(line, {"source": source, "position": i, "content_hash": f"{source}-{line}"})
                          for i, line in enumerate(lines)]
                writer.add_file(FileRecord("root", source, 10, 1, f"sha-{source}-{len(lines)}", title=source),
                                chunks, unit(len(lines)))
            writer.commit("test-model")

    write(settings, texts(edited=False))
    write(settings, {"rare.md": texts(edited=True)["rare.md"]})  # a one-file commit: a new segment
    fresh = with_overrides(settings, data_dir=tmp_path / "fresh")
    write(fresh, texts(edited=True))

    synced, rebuilt = Store.open(settings, check_model=False), Store.open(fresh, check_model=False)
    assert len(synced._segments) == 2
    query = "table index varroa"
    assert [h.text for h in synced.keyword_search(query, 3)] == [h.text for h in rebuilt.keyword_search(query, 3)]
    assert synced.keyword_search(query, 1)[0].text == "varroa mites in the hive table"


def as_a_new_process() -> None:
    """Forget what this process loaded and hashed, as a new `docchat` process starts."""
    segments.forget_except(set())
    segments._verified.clear()


def test_a_new_process_opens_vouched_segments_lazily_and_finds_the_same(settings, monkeypatch):
    monkeypatch.setattr(segments, "MMAP_FROM_BYTES", 0)  # the big-index path: memory-mapped on first use
    monkeypatch.setattr(segments, "APPROXIMATE_FROM", 90)  # and the first segment IVF
    files = commit(settings, **{f"f{i}.md": unit(20) for i in range(5)})
    commit(settings, **{"g.md": unit(3)})
    queries = unit(10)

    def answers(store):
        return [[(h.source, h.text, round(h.score, 5)) for h in store.search(q, 5)] for q in queries]

    as_a_new_process()
    lazy = Store.open(settings, check_model=False)
    assert len(lazy) == 103 and not any(part.loaded for part in lazy._segments)  # nothing read yet
    assert {d.source: d.chunks for d in lazy.documents()}["f3.md"] == 20  # catalog and rows work unloaded
    lazy_answers = answers(lazy)
    assert all(part.loaded for part in lazy._segments)
    import faiss

    assert isinstance(faiss.downcast_index(lazy._segments[0].index.index), faiss.IndexIVF)

    (settings.index_path / layout.VOUCHED).unlink()  # no record: every file hashed and loaded, as before
    as_a_new_process()
    eager = Store.open(settings, check_model=False)
    assert all(part.loaded for part in eager._segments) and answers(eager) == lazy_answers
    assert lazy.search(files["f2.md"][4], 1)[0].text == "plain chunk 4 of f2.md"


def test_a_one_file_commit_from_a_new_process_reads_no_other_segment(settings):
    commit(settings, **{f"f{i}.md": unit(20) for i in range(5)})
    as_a_new_process()
    with IndexWriter(settings) as writer:
        writer.delete_file("root", "f1.md")
        put(writer, "new.md", unit(4))
        writer.commit("test-model")
    big = next(part for part in segments._loaded.values() if len(part) == 100)
    assert not big.loaded  # its deleted rows were counted through SQLite, its vectors never read
    as_a_new_process()
    store = Store.open(settings, check_model=False)
    assert sorted(d.source for d in store.documents()) == ["f0.md", "f2.md", "f3.md", "f4.md", "new.md"]
    assert len(store) == 84 and all(h.source != "f1.md" for h in store.search(unit(1)[0], 84))


def test_a_vouched_file_changed_in_place_is_still_refused(settings):
    commit(settings, **{"a.md": unit(8)})
    path = next(layout.current_generation(settings.index_path).glob("seg-*.faiss"))
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: only ctime moved
    as_a_new_process()
    with pytest.raises(StoreError, match="checksum"):
        Store.open(settings, check_model=False)


def test_a_lazily_opened_generation_stays_searchable_after_its_folder_is_removed(settings):
    vectors = commit(settings, **{"a.md": unit(6)})["a.md"]
    as_a_new_process()
    store = Store.open(settings, check_model=False)
    for _ in range(2):  # two newer generations: the writer removes the folder this store opened
        commit(settings, **{"b.md": unit(2)})
    assert not store.path.exists()
    assert store.search(vectors[5], 1)[0].text == "plain chunk 5 of a.md"


@pytest.mark.parametrize("dense_ids", [postings.DENSE_IDS, 0])  # rows summed by counting, or by sorting
def test_keyword_ranking_from_kept_word_scores_equals_fts5s_own_after_edits_and_deletes(settings, monkeypatch,
                                                                                         dense_ids):
    """vectorstore/postings.py ranks by per-word scores read once: the same rows and scores as
    FTS5's OR query, with deleted rows left out even when their scores were kept before."""
    monkeypatch.setattr(postings, "DENSE_IDS", dense_ids)

    vocabulary = ("varroa hive queen honey wax table index chunk pier budget euro licence mite frame comb smoke "
                  "apiary nectar pollen swarm drone brood super lid feeder veil glove spring autumn winter").split()
    pick = np.random.default_rng(3)

    def write(names):
        with IndexWriter(settings) as writer:
            for source in names:
                lines = [" ".join(pick.choice(vocabulary, size=pick.integers(3, 12))) for _ in range(6)]
                chunks = [NewChunk(line, {"source": source, "position": i, "content_hash": f"{source}-{i}-{line}"})
                          for i, line in enumerate(lines)]
                writer.add_file(FileRecord("root", source, 10, 1, f"sha-{source}-{lines[0]}", title=source),
                                chunks, unit(len(lines)))
            writer.commit("test-model")

    def both(store, query):
        kept = [(h.chunk_id, h.score) for h in store.keyword_search(query, 8)]
        cold = postings.COLD_ROWS
        postings.COLD_ROWS = -1  # every question cold: FTS5 ranks it
        try:
            fts5 = [(h.chunk_id, h.score) for h in store.keyword_search(query, 8)]
        finally:
            postings.COLD_ROWS = cold
        postings.reads_done()
        return kept, fts5

    def same_ranking(a, b):
        return [i for i, _ in a] == [i for i, _ in b] and [s for _, s in a] == pytest.approx([s for _, s in b])

    queries = ["varroa honey", "table index chunk pier", "the queen's wax budget?", "licence"]
    write([f"f{i}.md" for i in range(8)])
    store = Store.open(settings, check_model=False)
    for query in queries:
        kept, fts5 = both(store, query)
        assert same_ranking(kept, fts5) and len(kept) == 8
    assert ("varroa",) in {word for _, word in postings._kept}  # the kept scores were used
    before = {h.chunk_id for h in store.keyword_search("varroa honey", 48)}

    write(["f2.md"])  # an edit: f2's old rows are deleted from the old segment, whose scores stay kept
    with IndexWriter(settings) as writer:
        writer.delete_file("root", "f5.md")
        writer.commit("test-model")
    store = Store.open(settings, check_model=False)
    assert len(store._segments) == 2 and store._deleted.size == 12
    gone = set(store._deleted.tolist())
    assert before & gone  # the test deletes rows the first search had found
    for query in queries:
        kept, fts5 = both(store, query)
        assert same_ranking(kept, fts5) and not {chunk_id for chunk_id, _ in kept} & gone


def test_read_ahead_ranks_a_first_question_from_kept_scores_as_fts5_would(settings, monkeypatch):
    """A long-running app reads the common words' scores when it opens the index (``warm``):
    the first question of words never asked is then ranked without reading any of them, by
    their stems ("hives" is kept as "hive"), exactly as FTS5 ranks it."""
    monkeypatch.setattr(postings, "WARM_MIN_ROWS", 2)
    lines = ["the hive and the queen", "a queen in her hive", "honey from a hive", "wax and honey",
             "smoke calms a hive", "the queen lays eggs", "one frame of honey", "on the frame"]
    with IndexWriter(settings) as writer:
        for f in range(3):
            source = f"f{f}.md"
            chunks = [NewChunk(line, {"source": source, "position": i, "content_hash": f"{source}-{i}"})
                      for i, line in enumerate(lines)]
            writer.add_file(FileRecord("root", source, 10, 1, f"sha-{source}", title=source), chunks,
                            unit(len(lines)))
        writer.commit("test-model")
    store = Store.open(settings, check_model=False)
    postings.forget_except(set())
    store.warm()
    postings.reads_done()
    assert postings.stems("hives") == ("hive",) and postings.stems("one") == ("on",)
    assert {postings.stems(w) for w in ("hives", "queens", "honey", "one")} <= {stems for _, stems in postings._kept}

    def no_reading(*_args):
        raise AssertionError("a word was read while the question waited")

    question = "Which hives have queens and honey, and which one has frames?"
    with monkeypatch.context() as during:
        during.setattr(postings, "_read", no_reading)
        during.setattr(postings, "_later", no_reading)
        kept = [(h.chunk_id, h.score) for h in store.keyword_search(question, 10)]
    monkeypatch.setattr(postings, "COLD_ROWS", -1)  # FTS5 ranks it
    fts5 = [(h.chunk_id, h.score) for h in store.keyword_search(question, 10)]
    assert len(kept) == 10 and [i for i, _ in kept] == [i for i, _ in fts5]
    assert [s for _, s in kept] == pytest.approx([s for _, s in fts5])


def test_an_app_reads_ahead_when_it_starts_and_starts_without_an_index_too(settings, monkeypatch):
    from app.engine import Engine

    monkeypatch.setattr(postings, "WARM_MIN_ROWS", 0)
    postings.forget_except(set())
    Engine(settings).read_ahead()  # no index yet: the first question will say so, not the start
    commit(settings, **{"a.md": unit(4)})
    Engine(settings, store=Store.open(settings, check_model=False)).read_ahead()
    postings.reads_done()
    assert ("plain",) in {stems for _, stems in postings._kept}


def test_words_too_common_to_keep_are_not_read_over_and_over(settings, monkeypatch):
    """At 1M chunks one question's words can hold more scores than may be kept: reading them
    after each question would only push out other words (and take a core) for nothing."""
    commit(settings, **{f"f{i}.md": unit(20) for i in range(5)})
    store = Store.open(settings, check_model=False)
    postings.forget_except(set())
    monkeypatch.setattr(postings, "COLD_ROWS", 10)
    submitted = []
    monkeypatch.setattr(postings, "_later", lambda: type("Pool", (), {"submit": lambda self, *a: submitted.append(a)})())
    monkeypatch.setattr(postings, "MAX_POSTINGS", 1000)
    assert store.keyword_search("plain chunk", 5)  # 200 rows: kept after this question
    assert len(submitted) == 1
    monkeypatch.setattr(postings, "MAX_POSTINGS", 300)
    assert store.keyword_search("plain chunk", 5)  # 200 rows, over half of what may be kept
    assert len(submitted) == 1


def test_a_word_already_kept_is_not_read_again_off_the_path(settings, monkeypatch):
    """Two questions in a row can send the same words to be read after them: the second reading
    finds them kept, under their stems ("chunks" is kept as "chunk"), and reads nothing."""
    commit(settings, **{"a.md": unit(6)})
    store = Store.open(settings, check_model=False)
    postings.forget_except(set())
    reads = []
    read = postings._read
    monkeypatch.setattr(postings, "_read", lambda *args: reads.append(args[3]) or read(*args))
    for _ in range(2):
        postings._read_all(store._db, store._segment_key(0), 0, ["chunks", "plain"])
    assert reads == ["chunks", "plain"]
