"""Reading the index: one finished, verified generation, opened read-only.

Readers take no lock: a generation never changes after the writer switches `CURRENT` to it.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.errors import StoreError
from vectorstore import layout, postings, segments
from vectorstore.records import DocumentInfo, Hit
from vectorstore.schema import source_filter

if TYPE_CHECKING:
    from app.config import Settings

OPEN_ATTEMPTS = 5  # each retry means a writer published meanwhile: a few cover any real pace
# IVF lists searched per query: a 16th of them (at least 32). bench/scale.py measures recall@10
# against exact search and the latency this costs.
NPROBE_SHARE, NPROBE_MIN = 16, 32
# A search restricted to a few documents scores their vectors exactly instead of probing IVF
# lists: the probed lists may hold none of them (recall@10 0.66 for one 1,000-chunk folder of a
# 100k index, bench/postgres_store.py). Up to this many vectors (15 MB) per segment.
EXACT_FILTER_MAX = 10_000
_WORD = re.compile(r"\w+", re.UNICODE)
# Keyword candidates per segment, per result wanted: each segment ranks its own matches first.
CANDIDATES_PER_RESULT = 4
# A segment with at least this share of the index's rows keeps its own keyword statistics.
OWN_STATISTICS_SHARE = 0.25
# Per segment (by its files): row count (key None) and rows holding each word. Segments are
# immutable; entries of segments no open generation uses go when the next one opens.
_TERM_COUNTS: dict[tuple, dict] = {}


def _fts5_idf(rows: int, hits: int) -> float:
    """The idf FTS5's bm25() uses: log((N - n + 0.5) / (n + 0.5)), at least 1e-6."""
    idf = math.log((rows - hits + 0.5) / (hits + 0.5))
    return idf if idf > 0 else 1e-6
# Words too common to rank by: BM25 gives them almost no weight, yet matching them makes
# SQLite score nearly every chunk. Dropped from keyword queries unless nothing else is left.
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in into is it its "
    "me my no not of on or so than that the their them then there these they this to was we "
    "what when where which who why will with would you your".split()
)


def _few_chosen(part: "segments.Segment", ids: np.ndarray) -> np.ndarray | None:
    """The chosen ids this approximate (IVF) segment holds, when few enough to score exactly."""
    import faiss

    if not isinstance(faiss.downcast_index(part.index.index), faiss.IndexIVF):
        return None  # a flat segment's filtered search is exact already
    held = ids[part.holds(ids)]
    return held if len(held) <= EXACT_FILTER_MAX else None


def _exact_search(part: "segments.Segment", ids: np.ndarray, query: np.ndarray, n: int) -> list[tuple[int, float]]:
    if not len(ids):
        return []
    scores = part.index.reconstruct_batch(ids) @ query
    best = np.argsort(-scores, kind="stable")[:n]
    return [(int(ids[i]), float(scores[i])) for i in best]


def search_parameters(part: "segments.Segment", selector):
    """FAISS search parameters for a segment: the id filter, and enough IVF lists for recall."""
    import faiss

    inner = faiss.downcast_index(part.index.index)
    if isinstance(inner, faiss.IndexIVF):
        nprobe = min(inner.nlist, max(NPROBE_MIN, inner.nlist // NPROBE_SHARE))
        return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def connect_readonly(path: Path) -> sqlite3.Connection:
    # immutable=1: no locks, no journal look-ups; true because a generation is never modified.
    db = sqlite3.connect(path.as_uri() + "?immutable=1", uri=True, check_same_thread=False)
    db.row_factory = sqlite3.Row
    return db


def attach_segments(db: sqlite3.Connection, gen_dir: Path, names: list[str]) -> None:
    """Attach each segment's rows (read-only, immutable) and show them, less the deleted ids, as
    one temporary view ``chunks``: the catalog queries read it as they read a single table."""
    selects = []
    for n, name in enumerate(names):
        db.execute(f"ATTACH DATABASE ? AS s{n}", [(gen_dir / segments.rows_file(name)).as_uri() + "?immutable=1"])
        selects.append(f"SELECT {segments.CHUNK_COLUMNS} FROM s{n}.chunks")
    empty = "SELECT 0 AS id, '' AS root, '' AS source, 0 AS position, '' AS text, '' AS content_hash, " \
        "'{}' AS metadata WHERE 0"
    body = " UNION ALL ".join(selects) or empty
    db.execute(f"CREATE TEMP VIEW chunks AS SELECT * FROM ({body}) WHERE id NOT IN (SELECT id FROM main.deleted)")


def check_consistent(segment: "segments.Segment", db: sqlite3.Connection, n: int, gen_dir: Path) -> None:
    """A segment's FAISS file and its rows must hold exactly the same chunk ids."""
    row_ids = np.fromiter((r[0] for r in db.execute(f"SELECT id FROM s{n}.chunks ORDER BY id")), np.int64)
    if not np.array_equal(segment.ids, row_ids):
        problem = f"{len(segment.ids)} vectors but {len(row_ids)} chunk rows" if len(segment.ids) != len(row_ids) \
            else "vector ids and chunk ids differ"
        raise layout.damaged(gen_dir / segments.vectors_file(segment.name), f"is inconsistent ({problem})")


def model_mismatch(recorded: str, dim: int, wanted: str, recorded_stamp: str | None = None,
                   wanted_stamp: str | None = None) -> StoreError:
    """Vectors of another model, or of the same model run another way (``onnx-int8`` vs ``torch-fp32``)."""
    if recorded == wanted and recorded_stamp != wanted_stamp:
        return StoreError(
            f"The index was embedded by {recorded!r} as {recorded_stamp}, but the settings embed queries as "
            f"{wanted_stamp}: vectors of different runtimes or precisions are not compared.",
            fix="Re-embed your documents: `docchat ingest --full` (or set DOCCHAT_EMBEDDING_RUNTIME and "
            "DOCCHAT_EMBEDDING_PRECISION to match the index: torch-fp32 means RUNTIME=torch).",
        )
    return StoreError(
        f"The index was built with the embedding model {recorded!r} ({dim} dimensions), but the "
        f"settings name {wanted!r}: its vectors cannot be compared.",
        fix="Re-embed your documents with the new model: `docchat ingest --full` (or set "
        f"DOCCHAT_EMBEDDING_MODEL back to {recorded!r}).",
    )


def embedding_stamp(manifest: dict) -> str:
    """How the index's vectors were computed; an index older than the stamp was torch fp32."""
    return str(manifest.get("embedding", "torch-fp32"))


class Store:
    """A read-only view of the live index: dense search, keyword search and the catalog."""

    def __init__(self, gen_dir: Path, parts: list["segments.Segment"], db: sqlite3.Connection, manifest: dict,
                 deleted: np.ndarray):
        self.path = gen_dir
        self._segments = parts
        self._db = db
        self._deleted = deleted  # sorted ids of older segments' rows this generation dropped
        self.model_name: str = manifest["model"]
        self.dim: int = int(manifest["dim"])
        self.generation: int = int(manifest["generation"])
        self.embedding: str = embedding_stamp(manifest)  # e.g. "onnx-int8"
        self.manifest = manifest

    @classmethod
    def open(cls, settings: "Settings", *, check_model: bool = True) -> "Store":
        """Open the live generation after verifying its signature, checksums and consistency.

        Raises ``StoreError`` when there is no index yet, when a file was changed or not
        written by this install, when FAISS and SQLite disagree, or when the index was built
        with another embedding model than the settings name.
        """
        store = cls.open_live(settings)
        if store is None:
            raise StoreError(
                f"No index yet in {settings.index_path}.",
                fix="Add documents to a folder and run `docchat ingest FOLDER` "
                f"(or put them in {settings.docs_path} and run `docchat ingest`).",
            )
        if check_model and (store.model_name, store.embedding) != (settings.embedding_model_name,
                                                                   settings.embedding_stamp):
            store.close()
            raise model_mismatch(store.model_name, store.dim, settings.embedding_model_name, store.embedding,
                                 settings.embedding_stamp)
        return store

    @classmethod
    def open_live(cls, settings: "Settings") -> "Store | None":
        """The live generation, verified, or None when no index has been written yet.

        Once open, a generation stays readable (FAISS is in memory, SQLite holds its file open)
        even after a writer removes its folder. Opening can still meet a writer that switched
        and removed the folder half-way through, so a failure is trusted only when ``CURRENT``
        still names the same generation afterwards; otherwise the whole open starts again.
        """
        index_dir = settings.index_path
        for _attempt in range(OPEN_ATTEMPTS):
            gen_dir = layout.current_generation(index_dir)
            if gen_dir is None:
                return None
            try:
                return cls._open_generation(gen_dir, layout.index_key(settings.data_path))
            except StoreError:
                if layout.current_generation(index_dir) == gen_dir:
                    raise  # nobody moved it: real damage
        raise StoreError(f"The index in {index_dir} changed {OPEN_ATTEMPTS} times while it was being opened.",
                         fix="Try again when the running `docchat ingest` has finished.")

    @classmethod
    def _open_generation(cls, gen_dir: Path, key: bytes) -> "Store":
        if not gen_dir.is_dir():
            raise layout.damaged(gen_dir, "(the live generation named by CURRENT) is missing")
        vouched: set[str] = set()
        manifest = layout.verify_live(gen_dir, key, vouched)
        names, files, counts = manifest["segments"], manifest["files"], manifest.get("counts", {})
        try:
            db = connect_readonly(gen_dir / layout.DATABASE)
            db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, segments.MAX_SEGMENTS + 2)
            attach_segments(db, gen_dir, names)
            parts = []
            for n, name in enumerate(names):
                # Vouched for (files unchanged since the writer checked them): opened lazily, not
                # read until searched. Otherwise loaded and checked against its rows now.
                lazy = set(segments.files_of(name)) <= vouched and name in counts
                part = segments.load(gen_dir, name, files, counts[name] if lazy else None)
                if not lazy and not part.checked:
                    check_consistent(part, db, n, gen_dir)
                    part.checked = True
                parts.append(part)
            deleted = np.fromiter((r[0] for r in db.execute("SELECT id FROM main.deleted ORDER BY id")), np.int64)
        except (RuntimeError, sqlite3.DatabaseError) as exc:
            raise layout.damaged(gen_dir, f"cannot be read ({exc})") from None
        except layout.NotRegularFile as exc:
            raise layout.damaged(Path(exc.filename), exc.strerror) from None
        except OSError as exc:
            raise layout.damaged(gen_dir, f"cannot be read ({exc.strerror or exc})") from None
        keep = {segments.key_of(p.name, files) for p in parts}
        segments.forget_except(keep)
        for key in [k for k in list(_TERM_COUNTS) if k not in keep]:
            _TERM_COUNTS.pop(key, None)
        postings.forget_except(keep)
        return cls(gen_dir, parts, db, manifest, deleted)

    def __len__(self) -> int:
        return sum(len(p) for p in self._segments) - len(self._deleted)

    def close(self) -> None:
        self._db.close()

    # -- search -----------------------------------------------------------------------------
    def search(self, query_vector, k: int, *, sources: list[str] | None = None, fetch_k: int | None = None) -> list[Hit]:
        """The k chunks most similar (cosine) to the query vector, best first.

        ``sources`` restricts to those source paths, or folders when an entry ends with '/'.
        The restriction is exact (applied inside FAISS), so ``fetch_k`` only widens how many
        candidates FAISS ranks; at most k hits are returned.
        """
        import faiss

        if len(self) == 0 or k <= 0:
            return []
        query = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise StoreError(
                f"A {query.shape[1]}-dimension query vector cannot search this {self.dim}-dimension index.",
                fix="Use the embedding model the index was built with, or `docchat ingest --full`.",
            )
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        if sources:
            ids = self._ids_of_sources(sources)
            if ids.size == 0:
                return []
            selector = faiss.IDSelectorBatch(ids)
        elif self._deleted.size:
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._deleted))
        else:
            selector = None
        n = min(max(k, fetch_k or 0), len(self))
        found: list[tuple[int, float]] = []
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query: OpenMP's hand-offs cost 100x on a busy CPU (bench/scale.py)
        try:
            for part in self._segments:
                chosen = _few_chosen(part, ids) if sources else None
                if chosen is not None:
                    found += _exact_search(part, chosen, query[0], n)
                    continue
                scores, found_ids = part.index.search(query, min(n, len(part)), params=search_parameters(part, selector))
                found += [(int(i), float(s)) for i, s in zip(found_ids[0], scores[0]) if i >= 0]
        finally:
            faiss.omp_set_num_threads(threads)
        found.sort(key=lambda pair: -pair[1])
        return self._hits(found[:k])

    def keyword_search(self, query: str, k: int, *, sources: list[str] | None = None) -> list[Hit]:
        """The k chunks that best match the query's words (SQLite FTS5 BM25), best first."""
        words = _WORD.findall(query.lower())
        words = [w for w in words if w not in STOPWORDS] or words
        if not words or k <= 0:
            return []
        terms = list(dict.fromkeys(words))
        match = " OR ".join(f'"{w}"' for w in terms)
        # each segment's best by its own BM25, a wide net; re-scored below with the index's statistics
        candidates = {n: self._ranked(n, terms, match, sources, k * CANDIDATES_PER_RESULT)
                      for n in range(len(self._segments))}
        scored = sorted(self._bm25(terms, candidates).items(), key=lambda item: -item[1])[:k]
        return self._hits(scored)

    def warm(self) -> None:
        """Read the keyword scores of the words most chunks hold, in the background, so that the
        first questions are ranked from them too (vectorstore/postings.py)."""
        postings.warm(self._db, [(self._segment_key(n), n, self.path / segments.rows_file(part.name))
                                 for n, part in enumerate(self._segments)], STOPWORDS)

    def _ranked(self, n: int, terms: list[str], match: str, sources: list[str] | None, limit: int) -> list:
        """Segment n's best ``limit`` live rows for ``match`` (an OR of ``terms``) as (id, rank),
        from the kept per-word scores when no document filter narrows the search."""
        if not sources:
            found = postings.best(self._db, self._segment_key(n), n, terms, limit,
                                  lambda term: self._term_hits(n, [term])[term], self._deleted)
            if found is not None:
                return found
        return self._fts_rows(n, match, sources, "f.rank AS rank", "ORDER BY f.rank LIMIT ?", [limit])

    def _bm25(self, terms: list[str], candidates: dict[int, list]) -> dict[int, float]:
        """BM25 of the candidates with each word's rarity counted over the whole index.

        FTS5's bm25() knows only its own segment: in a one-file segment a word every chunk there
        holds gets no weight (its idf is clamped to 1e-6), so an edited file, alone in its new
        segment, scored ~0 for the very words that found it before the edit. A segment holding
        a large share of the index has nearly the index's statistics and keeps its own scores;
        in a smaller one, per word, bm25() divided by the segment's idf is the term-frequency
        part, and times the index-wide idf, summed over words, is the score one index would
        have given. (Re-scoring every segment so would cost 5x at 10k chunks; small segments'
        word lists are short.)"""
        rows = [self._row_count(n) for n in range(len(self._segments))]
        total = sum(rows)
        scores: dict[int, float] = {}
        small = [n for n, found in candidates.items() if found and rows[n] < total * OWN_STATISTICS_SHARE]
        for n, found in candidates.items():
            if n not in small:
                scores.update((chunk_id, -float(rank)) for chunk_id, rank in found)
        if not small:
            return scores
        hits = [self._term_hits(n, terms) for n in range(len(self._segments))]
        for n in small:
            ids = [chunk_id for chunk_id, _ in candidates[n]]
            marks = ",".join("?" * len(ids))
            for term in terms:
                if not hits[n][term]:
                    continue
                weight = _fts5_idf(total, sum(h[term] for h in hits)) / _fts5_idf(rows[n], hits[n][term])
                for chunk_id, rank in self._db.execute(
                        f"SELECT rowid, bm25(chunks_fts) FROM s{n}.chunks_fts WHERE chunks_fts MATCH ? "
                        f"AND rowid IN ({marks})", [f'"{term}"', *ids]):
                    scores[chunk_id] = scores.get(chunk_id, 0.0) - float(rank) * weight
        return scores

    def _row_count(self, n: int) -> int:
        cached = self._segment_counts(n)
        if None not in cached:
            cached[None] = self._db.execute(f"SELECT count(*) FROM s{n}.chunks").fetchone()[0]
        return cached[None]

    def _term_hits(self, n: int, terms: list[str]) -> dict[str, int]:
        """How many of segment n's rows hold each word."""
        cached = self._segment_counts(n)
        for term in terms:
            if term not in cached:
                cached[term] = self._db.execute(
                    f"SELECT count(*) FROM s{n}.chunks_fts WHERE chunks_fts MATCH ?", [f'"{term}"']).fetchone()[0]
        return {term: cached[term] for term in terms}

    def _segment_counts(self, n: int) -> dict:
        """Segment n's cached counts. Segments never change once written, so they are kept for
        as long as the segment is in use."""
        return _TERM_COUNTS.setdefault(self._segment_key(n), {})

    def _segment_key(self, n: int) -> tuple:
        return segments.key_of(self._segments[n].name, self.manifest["files"])

    def has_term(self, term: str, *, sources: list[str] | None = None) -> bool:
        """Whether any chunk (of ``sources``, if given) contains ``term``: a word, or several as a
        phrase (those words, in that order, side by side); no ranking, so cheap."""
        words = _WORD.findall(term.lower())
        if not words:
            return False
        return any(self._fts('"' + " ".join(words) + '"', sources, "1", "LIMIT 1", []))

    def _fts(self, match: str, sources: list[str] | None, columns: str, tail: str, extra: list) -> list[list]:
        """One FTS5 query per segment (each has its own index), live chunks only: the rows of
        each segment, in segment order."""
        return [self._fts_rows(n, match, sources, columns, tail, extra) for n in range(len(self._segments))]

    def _fts_rows(self, n: int, match: str, sources: list[str] | None, columns: str, tail: str, extra: list) -> list:
        where, params = source_filter(sources, "c.source")
        return self._db.execute(
            f"SELECT c.id AS id, {columns} FROM s{n}.chunks_fts AS f JOIN s{n}.chunks c ON c.id = f.rowid "
            f"WHERE f.chunks_fts MATCH ? AND {where} AND c.id NOT IN (SELECT id FROM main.deleted) {tail}",
            [match, *params, *extra],
        ).fetchall()

    def ids_held(self, chunk_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Which of these chunk ids each segment holds, by segment name. A segment not loaded yet
        is asked through its rows (a primary-key look-up per id), so it stays unread."""
        found = {}
        probe = False
        for n, part in enumerate(self._segments):
            if part.loaded or not len(chunk_ids):
                found[part.name] = chunk_ids[part.holds(chunk_ids)] if len(chunk_ids) else chunk_ids
                continue
            if not probe:
                self._db.execute("CREATE TEMP TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY)")
                self._db.execute("DELETE FROM temp.probe")
                self._db.executemany("INSERT INTO temp.probe (id) VALUES (?)", ((int(i),) for i in chunk_ids))
                probe = True
            rows = self._db.execute(f"SELECT id FROM s{n}.chunks WHERE id IN (SELECT id FROM temp.probe) ORDER BY id")
            found[part.name] = np.fromiter((r[0] for r in rows), np.int64)
        return found

    def vectors(self, chunk_ids) -> np.ndarray:
        """The stored (normalised) vectors of these chunks, one row each, for MMR."""
        ids = np.asarray(list(chunk_ids), dtype=np.int64)
        if ids.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((ids.size, self.dim), dtype=np.float32)
        for part in self._segments:
            held = part.holds(ids)
            if held.any():
                out[held] = part.index.reconstruct_batch(ids[held])
        return out

    # -- catalog ----------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        """Every ingested file with its chunk count, by folder then path."""
        rows = self._db.execute(
            "SELECT f.source, f.root, f.title, f.size, f.ingested_at, "
            "(SELECT COUNT(*) FROM chunks c WHERE c.root = f.root AND c.source = f.source) AS n "
            "FROM files f ORDER BY f.root, f.source"
        )
        return [
            DocumentInfo(r["source"], r["root"], r["title"], r["n"], r["size"], r["ingested_at"]) for r in rows
        ]

    def chunks_of(self, source: str, root: str | None = None) -> list[Hit]:
        """A file's chunks in file order (score 0)."""
        sql = "SELECT id FROM chunks WHERE source = ?" + (" AND root = ?" if root else "")
        sql += " ORDER BY root, position"
        rows = self._db.execute(sql, [source, root] if root else [source])
        return self._hits([(row["id"], 0.0) for row in rows])

    def _ids_of_sources(self, sources: list[str]) -> np.ndarray:
        where, params = source_filter(sources)
        rows = self._db.execute(f"SELECT id FROM chunks WHERE {where}", params)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        if not scored:
            return []
        ids = [chunk_id for chunk_id, _ in scored]
        marks = ",".join("?" * len(ids))
        rows = {r["id"]: r for r in self._db.execute(f"SELECT id, text, metadata FROM chunks WHERE id IN ({marks})", ids)}
        return [
            Hit(chunk_id, rows[chunk_id]["text"], score, json.loads(rows[chunk_id]["metadata"]))
            for chunk_id, score in scored
            if chunk_id in rows
        ]
