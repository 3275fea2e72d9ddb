"""Retrieval variants measured on a question set (default: the PostgreSQL 15 docs set).

    python bench/retrieval_variants.py                      # every variant, table to stdout
    python bench/retrieval_variants.py --write bench/RESULTS-retrieval.md
    python bench/retrieval_variants.py --variants base,hybrid --limit-docs 200   # quick look

Each variant's chunks come from docchat's own loaders and splitter (``ingest``); they are
embedded with the configured embedding model, with every vector cached on disk under
``.bench/embcache/`` keyed by the sha256 of the embedded text, so variants that share
chunks never embed twice (a full PostgreSQL pass costs minutes on 2 cores). Retrieval then
runs in memory: numpy for dense search, an in-memory SQLite FTS5 table built like the
store's for BM25, and ``app.engine.fusion`` / ``app.engine.retrieval`` for fusion,
near-duplicate removal and MMR -- the same functions the engine uses.

Figures: hit@1, hit@5 and MRR over the answerable single-turn items and over the
follow-up turns (several follow-up query forms), and the abstention trade-off of a score
threshold on the best dense cosine (what the engine's threshold does).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sqlite3
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.config import load_settings  # noqa: E402
from app.engine.fusion import fuse_hits  # noqa: E402
from app.engine.relevance import unknown_terms  # noqa: E402
from app.evaluation.dataset import QAItem, load_items  # noqa: E402
from app.evaluation.scoring import gold_rank, retrieval_figures  # noqa: E402

DEFAULT_CORPUS = REPO / "corpora/postgresql-doc-15/usr/share/doc/postgresql-doc-15/html"
DEFAULT_QA = REPO.parent / "shared/eval/postgres-qa.jsonl"
BENCH_DIR = REPO / ".bench"
K = 5
THRESHOLDS = (0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50)


# -- variants ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunking:
    """What decides the chunks and the text embedded for each (what costs embedding time)."""

    chunk_size: int = 1000
    overlap: int = 150
    heading_aware: bool = True  # split within each heading section (docchat's splitter)
    embed_headings: bool = True  # "title > heading path" line before the embedded text

    def label(self) -> str:
        return (
            f"{self.chunk_size}/{self.overlap}"
            f"{'' if self.heading_aware else ', whole-page split'}"
            f"{', heading prefix' if self.embed_headings else ', no prefix'}"
        )


@dataclass(frozen=True)
class Variant:
    name: str
    chunking: Chunking = field(default_factory=Chunking)
    retrieval: str = "dense"  # dense | hybrid | bm25
    mmr: bool = False
    bm25_headings: bool = False  # BM25 over "title > heading" + text instead of the text alone
    fetch_k: int = 20
    threshold: float = 0.0  # the score threshold applied before the top-k cut
    unknown_bar: float | None = None  # the threshold when a query word is in no chunk
    per_hit: bool = True  # True: drop each chunk below it; False: only abstain below it
    floor: float | None = None  # with per_hit False: still drop each chunk below this
    note: str = ""


def variants() -> list[Variant]:
    base = Chunking()
    small = Chunking(chunk_size=500, overlap=75)
    small_np = replace(small, embed_headings=False)
    return [
        Variant("base-noprefix", replace(base, embed_headings=False), note="1000/150, no prefix (old default)"),
        Variant("base", base, note="1000/150 + heading prefix"),
        Variant("flat", replace(base, heading_aware=False), note="whole-page split"),
        Variant("size1500", Chunking(1500, 200)),
        Variant("size500-noprefix", small_np),
        Variant("size500", small),
        Variant("size300", Chunking(300, 50)),
        Variant("mmr", base, mmr=True),
        Variant("bm25", base, retrieval="bm25"),
        Variant("hybrid", base, retrieval="hybrid"),
        Variant("hybrid-h", base, retrieval="hybrid", bm25_headings=True),
        Variant("hybrid-t45-u55", base, retrieval="hybrid", threshold=0.45, unknown_bar=0.55),
        Variant("hybrid-q45-u55", base, retrieval="hybrid", threshold=0.45, unknown_bar=0.55, per_hit=False),
        Variant("defaults", base, retrieval="hybrid", threshold=0.45, unknown_bar=0.55, per_hit=False, floor=0.30,
                note="the shipped defaults"),
        Variant("hybrid-q45-u55-f20", base, retrieval="hybrid", threshold=0.45, unknown_bar=0.55, per_hit=False, floor=0.20),
        Variant("hybrid-500", small, retrieval="hybrid"),
        Variant("hybrid-500-t45-u55", small, retrieval="hybrid", threshold=0.45, unknown_bar=0.55),
        Variant("defaults-500", small, retrieval="hybrid", threshold=0.45, unknown_bar=0.55, per_hit=False, floor=0.30),
        Variant("hybrid-500-h", small, retrieval="hybrid", bm25_headings=True),
        Variant("hybrid-500-h-f50", small, retrieval="hybrid", bm25_headings=True, fetch_k=50),
        Variant("hybrid-500-h-mmr", small, retrieval="hybrid", bm25_headings=True, mmr=True),
    ]


# -- the corpus, parsed and chunked by docchat's own ingest code --------------------------------
def subset(docs, items: list[QAItem], sample: int, seed: int = 0) -> list:
    """Every gold page plus ``sample`` other pages drawn at random (fixed seed): a smaller
    corpus on which chunking variants are compared at a fraction of the embedding cost."""
    import random

    gold = {g for item in items for g in item.gold}
    golden = [d for d in docs if d[0] in gold]
    others = [d for d in docs if d[0] not in gold]
    return sorted(golden + random.Random(seed).sample(others, min(sample, len(others))), key=lambda d: d[0])


def parse_corpus(corpus: Path, limit_docs: int | None) -> list[tuple[str, object]]:
    """(source, ParsedDocument) for every supported file, cached: parsing takes a minute."""
    from ingest.loaders import TEXT_SUFFIXES, format_of, parse_bytes

    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    files = files[:limit_docs] if limit_docs else files
    key = hashlib.sha256("\n".join(f"{p}:{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()[:16]
    loader_mtime = max(p.stat().st_mtime_ns for p in (REPO / "ingest").glob("*.py"))
    cache = BENCH_DIR / f"parsed-{key}-{loader_mtime}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    docs = []
    for path in files:
        try:
            docs.append((path.relative_to(corpus).as_posix(), parse_bytes(format_of(path), path.read_bytes(), path.name)))
        except Exception as exc:  # a page docchat would skip: the bench skips it too
            print(f"  skipped {path.name}: {exc}", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(docs))
    return docs


def chunk_corpus(docs, chunking: Chunking) -> list:
    from ingest.documents import ParsedDocument, Section
    from ingest.splitter import make_splitter, split_document

    splitter = make_splitter(chunking.chunk_size, chunking.overlap)
    chunks = []
    for source, doc in docs:
        if not chunking.heading_aware:  # one section per page: chunks ignore headings
            doc = ParsedDocument(doc.title, [Section("\n\n".join(s.text for s in doc.sections))])
        chunks += split_document(doc, root="", source=source, splitter=splitter, embed_headings=chunking.embed_headings)
    return chunks


# -- embeddings, cached by the sha256 of the embedded text --------------------------------------
class EmbeddingCache:
    def __init__(self, settings, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (model TEXT, sha TEXT, v BLOB, PRIMARY KEY (model, sha))")
        # vectors from ingest.embedder.Embedder (sentence-transformers encode, normalised)
        self.settings = settings
        self.model = settings.embedding_model_name
        self._embedder = None
        self.seeded: dict[str, np.ndarray] = {}  # content_hash (sha256[:32]) -> vector

    def seed_from_index(self, data_dir: Path) -> None:
        """Reuse the vectors of a docchat index built from the same corpus (its chunks'
        content_hash is the sha256 of their embedded text): a variant whose chunks it already
        holds costs no embedding."""
        from app.config import with_overrides
        from vectorstore import Store

        store = Store.open(with_overrides(self.settings, data_dir=data_dir))
        for doc in store.documents():
            hits = store.chunks_of(doc.source, doc.root)
            vectors = store.vectors([h.chunk_id for h in hits])
            self.seeded.update({h.metadata["content_hash"]: v for h, v in zip(hits, vectors)})
        print(f"seeded {len(self.seeded)} vectors from {data_dir}", file=sys.stderr)

    @property
    def embedder(self):
        """docchat's own ingest embedder, so cached vectors equal those of an index."""
        if self._embedder is None:
            from ingest.embedder import Embedder

            self._embedder = Embedder(self.settings)
        return self._embedder

    def embed(self, texts: list[str], *, what: str = "texts") -> np.ndarray:
        shas = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        known = self._lookup(set(shas))
        known.update({s: self.seeded[s[:32]] for s in shas if s not in known and s[:32] in self.seeded})
        missing = list(dict.fromkeys(s for s in shas if s not in known))
        if missing:
            by_sha = dict(zip(shas, texts))
            start, done = time.perf_counter(), 0
            for i in range(0, len(missing), 256):
                batch = missing[i : i + 256]
                vectors = self.embedder([by_sha[s] for s in batch])
                rows = [(self.model, s, np.asarray(v, dtype=np.float32).tobytes()) for s, v in zip(batch, vectors)]
                self.db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)", rows)
                self.db.commit()  # keep progress if interrupted
                known.update({s: np.asarray(v, dtype=np.float32) for s, v in zip(batch, vectors)})
                done += len(batch)
                rate = done / (time.perf_counter() - start)
                print(f"  embedded {done}/{len(missing)} {what} ({rate:.0f}/s)", file=sys.stderr, flush=True)
        return np.stack([known[s] for s in shas]) if shas else np.zeros((0, 384), np.float32)

    def _lookup(self, shas: set[str]) -> dict[str, np.ndarray]:
        found, ordered = {}, list(shas)
        for i in range(0, len(ordered), 900):
            part = ordered[i : i + 900]
            marks = ",".join("?" * len(part))
            for sha, blob in self.db.execute(
                f"SELECT sha, v FROM vec WHERE model = ? AND sha IN ({marks})", [self.model, *part]
            ):
                found[sha] = np.frombuffer(blob, dtype=np.float32)
        return found


# -- an in-memory index of one chunking -----------------------------------------------------------
@dataclass
class Hit:  # the fields of vectorstore.Hit that the engine's selection functions read
    chunk_id: int
    text: str
    score: float
    metadata: dict


class MemoryIndex:
    """Dense matrix + FTS5 table over one chunking, searched like ``vectorstore.Store``."""

    def __init__(self, chunks, vectors: np.ndarray):
        self.chunks, self.matrix = chunks, vectors
        self.fts = {}

    def hit(self, i: int, score: float) -> Hit:
        c = self.chunks[i]
        return Hit(i, c.text, score, c.metadata)

    def search(self, qv: np.ndarray, k: int) -> list[Hit]:
        scores = self.matrix @ qv
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        return [self.hit(int(i), float(scores[i])) for i in sorted(top, key=lambda i: -scores[i])]

    def keyword_search(self, query: str, qv: np.ndarray, k: int, *, headings: bool) -> list[Hit]:
        """BM25 top-k; each hit scored by its cosine to the query, as fusion.with_cosine does."""
        import re

        db = self._fts(headings)
        words = re.findall(r"\w+", query.lower())
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))  # as vectorstore.Store does
        rows = db.execute(
            "SELECT rowid, bm25(f) FROM f WHERE f MATCH ? ORDER BY bm25(f) LIMIT ?", [match, k]
        ).fetchall()
        return [self.hit(r - 1, float(self.matrix[r - 1] @ qv) if qv is not None else 0.0) for r, _ in rows]

    def unknown_terms(self, query: str) -> list[str]:
        """``relevance.unknown_terms`` over this index's FTS table (the chunk texts, as the store's)."""
        index = self

        class Words:
            def has_term(self, word, *, sources=None):
                return bool(index.keyword_search(word, None, 1, headings=False))

        return unknown_terms(Words(), query)

    def _fts(self, headings: bool):
        if headings not in self.fts:
            db = sqlite3.connect(":memory:")
            db.execute("CREATE VIRTUAL TABLE f USING fts5 (text, tokenize='porter unicode61')")
            db.executemany(
                "INSERT INTO f (rowid, text) VALUES (?, ?)",
                [(i + 1, _prefixed(c) if headings else c.text) for i, c in enumerate(self.chunks)],
            )
            self.fts[headings] = db
        return self.fts[headings]

    def vectors(self, ids) -> np.ndarray:
        return self.matrix[list(ids)]


def _prefixed(chunk) -> str:
    meta = chunk.metadata
    return " > ".join(x for x in (meta.get("title"), meta.get("heading")) if x) + "\n" + chunk.text


def retrieve(index: MemoryIndex, variant: Variant, query: str, qv: np.ndarray, k: int = K) -> list[Hit]:
    """The engine's pipeline: candidates, threshold, near-duplicates out, top-k or MMR.

    Every candidate's score is its cosine to the query, so the best one is the best dense
    cosine whatever the variant: abstention ("nothing above the threshold") is the same
    decision for the per-chunk and the query-level threshold; what differs is whether
    keyword hits with a low cosine survive.
    """
    from app.engine.retrieval import drop_near_duplicates, select_mmr

    fetch = variant.fetch_k
    if variant.retrieval == "bm25":
        candidates = index.keyword_search(query, qv, fetch, headings=variant.bm25_headings)
    else:
        candidates = index.search(qv, fetch)
    if variant.retrieval == "hybrid":
        keyword = index.keyword_search(query, qv, fetch, headings=variant.bm25_headings)
        candidates = fuse_hits(candidates, keyword, limit=len(candidates) + len(keyword))
    threshold = variant.threshold
    if variant.unknown_bar and variant.unknown_bar > threshold and index.unknown_terms(query):
        threshold = variant.unknown_bar  # as relevance.judge, without the keyword relief
    if variant.per_hit:
        candidates = [h for h in candidates if h.score >= threshold]
    elif float(np.max(index.matrix @ qv)) < threshold:
        candidates = []
    elif variant.floor is not None:
        candidates = [h for h in candidates if h.score >= variant.floor]
    distinct = drop_near_duplicates(candidates)
    if variant.mmr:
        return select_mmr(distinct, qv, index, k, 0.5)
    return distinct[:k]


# -- the question set --------------------------------------------------------------------------
FOLLOWUP_FORMS = {
    "concat": lambda item: " ".join(item.turns[-2:]),  # what `docchat eval --no-llm` uses
    "alone": lambda item: item.turns[-1],
}


def queries_of(items: list[QAItem]) -> dict[str, list[tuple[QAItem, str]]]:
    single = [(i, i.question) for i in items if i.kind == "single"]
    follow = {f"followup-{name}": [(i, form(i)) for i in items if i.kind == "followup"] for name, form in FOLLOWUP_FORMS.items()}
    unanswerable = [(i, i.question) for i in items if i.kind == "unanswerable"]
    return {"single": single, **follow, "unanswerable": unanswerable}


def measure(index, variant, groups, qvecs) -> dict:
    out = {}
    for group, pairs in groups.items():
        ranks, tops, unknown, abstained = [], [], [], 0
        for item, query in pairs:
            hits = retrieve(index, variant, query, qvecs[query])
            ranks.append(gold_rank([h.metadata["source"] for h in hits], item.gold))
            tops.append(float(np.max(index.matrix @ qvecs[query])))  # best dense cosine
            unknown.append(bool(index.unknown_terms(query)))
            abstained += not hits
        out[group] = {**retrieval_figures(ranks), "top_cosines": tops, "unknown": unknown, "abstained": abstained}
    return out


UNKNOWN_BARS = (None, 0.45, 0.50, 0.55, 0.60, 0.65)


def abstention_rows(figures: dict, unknown_bar: float | None = None) -> list[tuple[float, int, int, int]]:
    """(threshold, unanswerable caught, of how many, false abstentions) for each threshold;
    with ``unknown_bar``, a query naming a word no chunk contains needs that cosine instead."""

    def abstains(groups):
        out = []
        for g in groups:
            for top, unknown in zip(figures[g]["top_cosines"], figures[g]["unknown"]):
                bar_for = (lambda t: max(t, unknown_bar)) if unknown and unknown_bar else (lambda t: t)
                out.append((top, bar_for))
        return out

    answerable, unanswerable = abstains(["single", "followup-concat"]), abstains(["unanswerable"])
    return [
        (t, sum(c < bar(t) for c, bar in unanswerable), len(unanswerable), sum(c < bar(t) for c, bar in answerable))
        for t in THRESHOLDS
    ]


# -- main -------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--qa", type=Path, default=DEFAULT_QA)
    parser.add_argument("--variants", help="comma-separated names (default: all)")
    parser.add_argument("--limit-docs", type=int, help="only the first N files (quick checks)")
    parser.add_argument("--subset", type=int, metavar="N", help="gold pages + N random other pages only")
    parser.add_argument("--seed-index", type=Path, metavar="DATA_DIR", help="reuse vectors of this docchat data folder")
    parser.add_argument("--write", type=Path, help="also write the tables into this markdown file")
    parser.add_argument("--section", default="variants", help="the marked section of --write to replace")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = load_settings(env_file=None)
    chosen = variants()
    if args.variants:
        names = args.variants.split(",")
        chosen = [v for v in chosen if v.name in names]
    items = load_items(args.qa)
    groups = queries_of(items)
    cache = EmbeddingCache(settings, BENCH_DIR / "embcache" / "vectors.sqlite")

    t0 = time.perf_counter()
    docs = parse_corpus(args.corpus, args.limit_docs)
    if args.subset is not None:
        docs = subset(docs, items, args.subset)
    if args.seed_index:
        cache.seed_from_index(args.seed_index)
    print(f"parsed {len(docs)} files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    all_queries = sorted({q for pairs in groups.values() for _, q in pairs})
    qvecs = dict(zip(all_queries, cache.embed(all_queries, what="queries")))

    indexes: dict[Chunking, MemoryIndex] = {}
    results = []
    for variant in chosen:
        if variant.chunking not in indexes:
            chunks = chunk_corpus(docs, variant.chunking)
            print(f"{variant.chunking.label()}: {len(chunks)} chunks", file=sys.stderr)
            indexes[variant.chunking] = MemoryIndex(chunks, cache.embed([c.embed_text for c in chunks], what="chunks"))
        index = indexes[variant.chunking]
        start = time.perf_counter()
        figures = measure(index, variant, groups, qvecs)
        ms = (time.perf_counter() - start) * 1000 / sum(len(p) for p in groups.values())
        results.append((variant, len(index.chunks), figures, ms))
        print(row(variant, len(index.chunks), figures, ms), flush=True)

    text = render(results, args, len(docs))
    print("\n" + text)
    if args.write:
        write_section(args.write, args.section, text)
    return 0


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the section between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` (added at
    the end when missing), so hand-written conclusions around it survive a re-run."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) :]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.write_text(new)


def threshold_label(variant) -> str:
    if not variant.threshold:
        return "none"
    bar = f" (unknown word: {variant.unknown_bar:.2f})" if variant.unknown_bar else ""
    floor = f", chunks below {variant.floor:.2f} dropped" if variant.floor is not None else ""
    return f"{variant.threshold:.2f}{bar} {'per chunk' if variant.per_hit else 'on the best chunk'}{floor}"


def row(variant, n_chunks, f, ms) -> str:
    cells = [variant.name, variant.chunking.label(), variant.retrieval + (" + MMR" if variant.mmr else "")
             + (" (BM25 on heading+text)" if variant.bm25_headings else "") + (f", fetch {variant.fetch_k}" if variant.fetch_k != 20 else ""),
             threshold_label(variant), str(n_chunks)]
    for group in ("single", "followup-concat", "followup-alone"):
        g = f[group]
        cells += [f"{g['hit@1']:.2f}", f"{g['hit@5']:.2f}", f"{g['mrr']:.2f}"]
    caught, n = f["unanswerable"]["abstained"], len(f["unanswerable"]["top_cosines"])
    false = f["single"]["abstained"] + f["followup-concat"]["abstained"]
    cells += [f"{caught}/{n}, {false}" if variant.threshold else "-", f"{ms:.0f}"]
    return "| " + " | ".join(cells) + " |"


def render(results, args, n_docs: int) -> str:
    corpus_note = f"{n_docs} files of {args.corpus.name}/"
    if args.subset is not None:
        corpus_note += f" (every gold page + {args.subset} other pages drawn at random, seed 0)"
    lines = [
        f"Produced by `python bench/retrieval_variants.py` "
        f"({args.qa.name}: 38 single-turn, 6 follow-up, 6 unanswerable items; corpus: {corpus_note}). "
        f"k = {K}; model all-MiniLM-L6-v2 (packaged). Follow-up queries: *concat* = previous user turn + follow-up "
        "(what `docchat eval --no-llm` sends), *alone* = the follow-up as typed (no rewriting).",
        "",
        "| variant | chunks (size/overlap, split, embedded text) | retrieval | threshold | chunks | single hit@1 | single hit@5 "
        "| single MRR | follow-up concat hit@1 | hit@5 | MRR | follow-up alone hit@1 | hit@5 | MRR "
        "| abstained: unanswerable, false | ms/query |",
        "|" + "---|" * 17,
    ]
    lines += [row(*r) for r in results]
    lines += ["", "Abstention by a threshold on the best dense cosine (caught of 6 unanswerable, false abstentions of 44 answerable):", ""]
    seen = set()
    for variant, _, figures, _ in results:
        if variant.chunking in seen:
            continue  # the best dense cosine, so the decision, depends on the chunks alone
        seen.add(variant.chunking)
        lines += [
            f"**{variant.chunking.label()}**",
            "",
            "| threshold | " + " | ".join("no unknown-term bar" if u is None else f"unknown-term bar {u:.2f}" for u in UNKNOWN_BARS) + " |",
            "|" + "---|" * (len(UNKNOWN_BARS) + 1),
        ]
        sweeps = [abstention_rows(figures, u) for u in UNKNOWN_BARS]
        for i, t in enumerate(THRESHOLDS):
            lines.append(f"| {t:.2f} | " + " | ".join(f"{s[i][1]}/{s[i][2]}, {s[i][3]} false" for s in sweeps) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
