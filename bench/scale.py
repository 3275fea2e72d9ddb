"""Synthetic indexes of 10k, 100k (and 1M) chunks through the real writer; one table per size.

    python bench/scale.py                       # 10k and 100k
    python bench/scale.py --sizes 500000,1000000 --real .bench/pg-data --nprobe 16:32,8:64,4:128

Per size: the build (one commit of files of 100 chunks), then a one-file commit (one file's
100 chunks replaced: the incremental sync's write), then reads. Printed:
  - generation disk size, and the new bytes the one-file commit wrote (files not hard-linked
    from the generation before)
  - one-file commit time in a process that has the index open; the next generation's open there
  - a one-file re-sync from a new process (`docchat ingest FILE`, with a word-hash stand-in for
    the model): wall time, its split (imports / sync), new disk; once with the writer's signed
    record of checked files removed (every segment hashed and read) and once as it normally runs
  - a new app process: open, first search, dense p50/p95, RSS (anonymous + file-backed)
  - dense search p50/p95 (k=10) and recall@10 against exact search, per IVF probe setting
    (segments of ``APPROXIMATE_FROM`` vectors or more are IVF; smaller ones exact); keyword
    search p50/p95 (3 words, k=10)
Vectors: 384-dim unit rows, either around 2,000 random centres (tight clusters: easy for IVF) or,
with ``--real DATA_DIR``, mixtures of a real index's chunk vectors plus noise (``mixtures``);
queries are new rows of the same distribution. Texts: ~120 words drawn from a 30,000-word Zipf
vocabulary. Heavy: run under `flock /work/heavy.lock`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DIM = 384
PER_FILE = 100
WORDS = 120
VOCABULARY = 30_000


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_vectors(rng, n: int, centres: np.ndarray) -> np.ndarray:
    rows = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.35 / np.sqrt(DIM), size=(n, DIM))
    rows = rows.astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_texts(rng, n: int, vocabulary: list[str]) -> list[str]:
    ranks = np.minimum(rng.zipf(1.3, size=(n, WORDS)), VOCABULARY) - 1
    return [" ".join(vocabulary[i] for i in row) for row in ranks]


def write_files(writer, rng, vectors: np.ndarray, vocabulary: list[str], first_file: int, tag: str = "",
                root: str = "root") -> None:
    from vectorstore.records import FileRecord, NewChunk

    for f in range(len(vectors) // PER_FILE):
        source = f"file-{first_file + f:07d}.md"
        texts = make_texts(rng, PER_FILE, vocabulary)
        chunks = [NewChunk(text, {"source": source, "position": i, "content_hash": f"{source}{tag}-{i}"})
                  for i, text in enumerate(texts)]
        record = FileRecord(root, source, 1000, 1, f"sha{tag}-{source}", title=source)
        writer.add_file(record, chunks, vectors[f * PER_FILE:(f + 1) * PER_FILE])


def percentiles(samples: list[float]) -> str:
    return f"{np.percentile(samples, 50):.1f} / {np.percentile(samples, 95):.1f} ms"


def gen_bytes(gen: Path) -> tuple[int, int]:
    """(all bytes of a generation folder, bytes of files only it has: not hard-linked elsewhere)."""
    total = new = 0
    for path in gen.iterdir():
        st = path.stat()
        total += st.st_size
        new += st.st_size if st.st_nlink == 1 else 0
    return total, new


def resync_child(data_dir: str, file: str) -> None:
    """A new process's one-file re-sync, as `docchat ingest FILE` runs it, with killloop's word-hash
    stand-in for the model: what is timed is the index's work and the parse, not the embedding."""
    started = time.perf_counter()
    from app.config import load_settings
    from ingest.sync import sync
    from killloop import HashedEmbeddings

    imported = time.perf_counter()
    summary = sync(load_settings(env_file=None, data_dir=Path(data_dir)), [Path(file)], embedder=HashedEmbeddings())
    done = time.perf_counter()
    print(f"RESYNC imports={imported - started:.3f} sync={done - imported:.3f} chunks={summary.chunks_embedded} "
          f"rss_mb={peak_rss_mb():.0f}", flush=True)


def commit_child(data_dir: str, root: str, source: str) -> None:
    """A new process's index work for a one-file re-sync, without parsing or embedding: open the
    index as sync does (an unlocked snapshot, then the writer), read the file's stored vectors,
    replace its chunks, commit."""
    started = time.perf_counter()
    from app.config import load_settings
    from vectorstore.records import FileRecord, NewChunk
    from vectorstore.writer import IndexWriter

    settings = load_settings(env_file=None, data_dir=Path(data_dir))
    imported = time.perf_counter()
    with IndexWriter(settings, read_only=True) as snapshot:
        snapshot.catalog(root)
        old = snapshot.stored_vectors(root, source)
    with IndexWriter(settings) as writer:
        writer.stored_vectors(root, source)
        vectors = np.array(list(old.values())[:PER_FILE], dtype=np.float32)[::-1]  # same vectors, new order
        chunks = [NewChunk(f"rewritten chunk {i}", {"source": source, "position": i, "content_hash": f"new-{i}"})
                  for i in range(len(vectors))]
        writer.add_file(FileRecord(root, source, 1000, 2, "sha-rewritten", title=source), chunks, vectors)
        writer.commit(settings.embedding_model_name)
    done = time.perf_counter()
    print(f"COMMIT imports={imported - started:.3f} index={done - imported:.3f} chunks={len(vectors)} "
          f"rss_mb={peak_rss_mb():.0f}", flush=True)


def resync_in_new_process(settings, docs: Path, rng, vocabulary: list[str], n: int, version: int) -> dict:
    """Rewrite one indexed file on disk and re-sync it from a new process; wall time and new disk."""
    from vectorstore import layout

    file = docs / f"file-{n // PER_FILE // 3:07d}.md"
    paragraphs = make_texts(rng, 40, vocabulary)
    file.write_text(f"# Version {version}\n\n" + "\n\n".join(paragraphs))
    started = time.perf_counter()
    figures = child_figures(["--resync-child", str(settings.data_path), str(file)], "RESYNC")
    wall = time.perf_counter() - started
    _, new = gen_bytes(layout.current_generation(settings.index_path))
    return {"wall": wall, "new_mb": new / 1e6, **figures}


def real_base(data_dir: Path) -> np.ndarray:
    """Every live chunk vector of a real docchat index (read-only): the geometry to build on."""
    from app.config import load_settings
    from vectorstore import Store

    store = Store.open(load_settings(env_file=None, data_dir=data_dir), check_model=False)
    ids = np.sort(np.concatenate([p.ids for p in store._segments]))
    ids = ids[~np.isin(ids, store._deleted)]
    base = store.vectors(ids)
    store.close()
    return base


def mixtures(rng, n: int, base: np.ndarray) -> np.ndarray:
    """Unit rows shaped like real embeddings: a real chunk vector, up to 40 % of a second one, and
    noise of norm 0.4 (cosine ~0.9 to the nearest real chunk): 85 variants per real chunk at 1M,
    spread over the anisotropic region real embeddings occupy rather than around tight centres."""
    first, second = base[rng.integers(0, len(base), n)], base[rng.integers(0, len(base), n)]
    weight = rng.uniform(0.0, 0.4, size=(n, 1)).astype(np.float32)
    rows = (1 - weight) * first + weight * second + rng.normal(scale=0.4 / np.sqrt(DIM), size=(n, DIM)).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def app_child(data_dir: str, queries: int) -> None:
    """A fresh process that opens the index and answers: its open time and memory (what the page holds)."""
    from app.config import load_settings
    from vectorstore import Store

    rng = np.random.default_rng(1)
    started = time.perf_counter()
    store = Store.open(load_settings(env_file=None, data_dir=Path(data_dir)), check_model=False)
    opened = time.perf_counter() - started
    probes = store.vectors(rng.integers(1, len(store), queries))  # (ids are dense from 1) loads every segment
    probes += rng.normal(scale=0.3 / np.sqrt(DIM), size=probes.shape).astype(np.float32)
    started = time.perf_counter()
    store.search(probes[0], 10)
    first = time.perf_counter() - started
    dense = []
    for probe in probes:
        t = time.perf_counter()
        store.search(probe, 10)
        dense.append(1000 * (time.perf_counter() - t))
    for word in ("w1x", "w2x", "w3x"):
        store.has_term(word)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = {k: int(status[k].split()[0]) // 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM") if k in status}
    print(f"APP open_s={opened:.3f} first_search_s={first:.3f} dense_p50_ms={np.percentile(dense, 50):.1f} "
          f"dense_p95_ms={np.percentile(dense, 95):.1f} " + " ".join(f"{k}_mb={v}" for k, v in mb.items()), flush=True)


def child_figures(args: list[str], tag: str) -> dict:
    import subprocess

    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return dict(part.split("=") for part in out.stdout.split(tag + " ", 1)[1].split())


def one_size(n: int, work: Path, queries: int, base: np.ndarray | None,
             nprobes: list[tuple[int, int]]) -> list[tuple[str, str]]:
    from app.config import load_settings
    from vectorstore import Store, layout, segments
    from vectorstore import store as store_module
    from vectorstore.writer import IndexWriter

    rng = np.random.default_rng(n)
    vocabulary = [f"w{i}x{rng.integers(1000)}" for i in range(VOCABULARY)]
    settings = load_settings(env_file=None, data_dir=work / f"data-{n}")
    if base is None:
        centres = rng.normal(size=(2000, DIM)).astype(np.float32)
        draw = lambda count, near=None: make_vectors(rng, count, centres if near is None else near)  # noqa: E731
    else:
        draw = lambda count, near=None: mixtures(rng, count, base)  # noqa: E731
    vectors = draw(n)
    rows = [("chunks", f"{n:,}"), ("vectors", "synthetic clusters" if base is None else
                                   f"mixtures of {len(base):,} real chunk vectors + noise")]

    docs = (work / f"docs-{n}").resolve()  # the synthetic files' root: one is written for the re-sync
    docs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with IndexWriter(settings) as writer:
        write_files(writer, rng, vectors, vocabulary, 0, root=str(docs))
        writer.commit(settings.embedding_model_name)
    rows.append(("full build (one commit)", f"{time.perf_counter() - started:.1f} s"))
    total, _ = gen_bytes(layout.current_generation(settings.index_path))
    rows.append(("generation disk size", f"{total / 1e6:.1f} MB ({total / n:.0f} B/chunk)"))

    reader = Store.open(settings, check_model=False)  # a process that has this generation loaded
    replaced = draw(PER_FILE)
    started = time.perf_counter()
    with IndexWriter(settings) as writer:
        write_files(writer, rng, replaced, vocabulary, n // PER_FILE // 2, tag="-v2", root=str(docs))
        writer.commit(settings.embedding_model_name)
    rows.append(("one-file commit (100 chunks replaced)", f"{time.perf_counter() - started:.2f} s"))
    _, new = gen_bytes(layout.current_generation(settings.index_path))
    rows.append(("  new disk bytes of that commit", f"{new / 1e6:.2f} MB"))
    start = (n // 2 // PER_FILE) * PER_FILE
    vectors[start:start + PER_FILE] = replaced

    started = time.perf_counter()
    store = Store.open(settings, check_model=False)
    rows.append(("open of the new generation, old one loaded", f"{1000 * (time.perf_counter() - started):.0f} ms"))
    reader.close()
    store.close()
    segments.forget_except(set())
    segments._verified.clear()

    # A one-file re-sync from a new process (`docchat ingest FILE`): first with the writer's
    # signed record of checked files removed (every segment hashed and read, as before lazy
    # opening), then as it runs normally (vouched segments opened lazily; mmap for big ones).
    for label, forget in (("hashing every file (no VOUCHED record)", True), ("normal (lazy open)", False)):
        if forget:
            (settings.index_path / layout.VOUCHED).unlink(missing_ok=True)
        figures = resync_in_new_process(settings, docs, rng, vocabulary, n, 1 if forget else 2)
        rows.append((f"one-file re-sync, new process: {label}",
                     f"{figures['wall']:.2f} s wall (imports {float(figures['imports']):.2f} s, sync "
                     f"{float(figures['sync']):.2f} s, {figures['chunks']} chunks, child peak RSS "
                     f"{figures['rss_mb']} MB), new disk {figures['new_mb']:.2f} MB"))
    started = time.perf_counter()
    source = f"file-{n // PER_FILE // 4:07d}.md"
    figures = child_figures(["--commit-child", str(settings.data_path), str(docs), source], "COMMIT")
    wall = time.perf_counter() - started
    _, new = gen_bytes(layout.current_generation(settings.index_path))
    rows.append(("  the index's part alone, new process (open, stored vectors, replace, commit)",
                 f"{wall:.2f} s wall (imports {float(figures['imports']):.2f} s, index {float(figures['index']):.2f} s, "
                 f"{figures['chunks']} chunks, peak RSS {figures['rss_mb']} MB), new disk {new / 1e6:.2f} MB"))
    app = child_figures(["--app-child", str(settings.data_path), str(queries)], "APP")
    rows.append(("app process: open / first search", f"{float(app['open_s']):.2f} s / {float(app['first_search_s']):.2f} s"))
    rows.append(("app process: dense p50 / p95", f"{app['dense_p50_ms']} / {app['dense_p95_ms']} ms"))
    rows.append(("app process: RSS (anon + file-backed) / peak",
                 f"{app['VmRSS_mb']} MB ({app['RssAnon_mb']} + {app['RssFile_mb']}) / {app['VmHWM_mb']} MB"))

    store = Store.open(settings, check_model=False)
    rows.append(("segments", ", ".join(f"{type(__import__('faiss').downcast_index(p.index.index)).__name__} "
                                       f"{len(p):,}" for p in store._segments)))
    ids = np.sort(np.concatenate([p.ids for p in store._segments]))
    ids = ids[~np.isin(ids, store._deleted)]
    live = store.vectors(ids)
    probes = draw(queries)  # new vectors of the same distribution (not in the index), like questions
    truth = np.argsort(-(probes @ live.T), axis=1)[:, :10]
    shares = (store_module.NPROBE_SHARE, store_module.NPROBE_MIN)
    for share, least in nprobes:
        store_module.NPROBE_SHARE, store_module.NPROBE_MIN = share, least
        dense, found_ids = [], []
        for probe in probes:
            t = time.perf_counter()
            hits = store.search(probe, 10)
            dense.append(1000 * (time.perf_counter() - t))
            found_ids.append([h.chunk_id for h in hits])
        recall = np.mean([len(set(f) & set(ids[t].tolist())) / 10 for f, t in zip(found_ids, truth)])
        lists = [faiss_lists(p) for p in store._segments]
        probed = ", ".join(f"{min(nl, max(least, nl // share))} of {nl:,}" for nl in lists if nl)
        rows.append((f"dense p50 / p95, recall@10 (lists 1/{share}, >= {least}: {probed or 'exact'})",
                     f"{percentiles(dense)}, recall {recall:.3f}"))
    store_module.NPROBE_SHARE, store_module.NPROBE_MIN = shares
    words = [" ".join(rng.choice(vocabulary[:3000], 3)) for _ in range(queries)]
    keyword = []
    for query in words:
        t = time.perf_counter()
        store.keyword_search(query, 10)
        keyword.append(1000 * (time.perf_counter() - t))
    rows.append(("keyword search p50 / p95 (3 words, k=10)", percentiles(keyword)))
    rows.append(("peak RSS of this (bench) process", f"{peak_rss_mb():.0f} MB"))
    store.close()
    shutil.rmtree(settings.data_path, ignore_errors=True)
    return rows


def faiss_lists(part) -> int:
    import faiss

    inner = faiss.downcast_index(part.index.index)
    return int(inner.nlist) if isinstance(inner, faiss.IndexIVF) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--approximate-from", type=int, default=None, help="override segments.APPROXIMATE_FROM")
    parser.add_argument("--real", type=Path, default=None,
                        help="a docchat data folder whose chunk vectors shape the synthetic ones (read-only), "
                        "e.g. .bench/pg-data; default: random clusters")
    parser.add_argument("--nprobe", default="16:32",
                        help="IVF settings to measure, SHARE:MIN,...: lists probed = max(MIN, lists/SHARE)")
    parser.add_argument("--resync-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--app-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--commit-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resync_child:
        resync_child(*args.resync_child)
        return 0
    if args.commit_child:
        commit_child(*args.commit_child)
        return 0
    if args.app_child:
        app_child(args.app_child[0], int(args.app_child[1]))
        return 0
    base = real_base(args.real) if args.real else None
    nprobes = [tuple(int(x) for x in pair.split(":")) for pair in args.nprobe.split(",")]
    from vectorstore import segments
    from vectorstore.store import NPROBE_MIN, NPROBE_SHARE

    if args.approximate_from:
        segments.APPROXIMATE_FROM = args.approximate_from

    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        for n in [int(s) for s in args.sizes.split(",")]:
            rows = one_size(n, Path(scratch), args.queries, base, nprobes)
            width = max(len(name) for name, _ in rows)
            print(f"\n== {n:,} chunks (IVF from {segments.APPROXIMATE_FROM:,} vectors per segment, nprobe 1/{NPROBE_SHARE} "
                  f"of lists, >= {NPROBE_MIN}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
            for name, value in rows:
                print(f"  {name:<{width}}  {value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
