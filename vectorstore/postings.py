"""Keyword ranking from cached per-word scores: FTS5's BM25, without FTS5's cost per query.

FTS5 ranks an OR of the question's words by computing bm25() for every row that holds any of
them: half of a 12k-chunk index for a typical question, 11 ms p50 and 20 ms p95 on this
machine, the largest part of a retrieval. BM25 is a sum over the query's words of one score
per (word, row), and in a segment (immutable) that score never changes. So each word's rows
and scores are read once, with a one-word FTS5 query, and kept; a question's ranking is then
a sum of a few arrays (0.6 ms p50, bench/RESULTS-scale.md, Round 6): the ranking FTS5 gives,
with its scores (equal to the last bit on the PostgreSQL and git questions; a sum in another
order may differ in the last one).

Scores are kept by the word's stems as FTS5 stores them ("workers" and "worker" share one
entry), which is also what lets them be read ahead: a long-running app (the page, the API and
MCP servers) calls ``warm`` when it opens an index, and the words most chunks hold are read in
the background, before the first questions need them (``docchat ask``, which asks once, does not).

The kept scores are bounded by MAX_POSTINGS (least recently used words go first; a question
whose words alone hold more keeps only some, and reads the rest again next time). Reading a
word costs more than FTS5 spends on it within one question, so a question whose words not yet
kept hold more than COLD_ROWS rows is ranked by FTS5 as before, and those words are read
afterwards, off the question's path.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

# Per (word, row) one id and one score: 16 bytes; 4M of them is 64 MB.
MAX_POSTINGS = 4_000_000
# Reading a word's rows costs ~2-3 us per row, against ~1.8 us per matched row for FTS5's own
# OR query (where a row holding several words counts once): up to this many rows (~5 ms) are
# read while a question waits.
COLD_ROWS = 2_000
# Read ahead: each word more than this many rows of a segment hold, most common first, up to
# WARM_POSTINGS in all. A word not read yet then costs well under a millisecond to read while
# a question waits (at 20, 1 of the 132 PostgreSQL, git and python questions took over 4 ms,
# a phrase; at 200, 44 did). At 12k chunks that is 600k scores (10 MB), read in ~2 s.
WARM_MIN_ROWS = 20
WARM_POSTINGS = MAX_POSTINGS // 2
# Row ids are summed by counting (an array as long as the largest id) when the largest is at
# most this many times the number of scores, else by sorting.
DENSE_IDS = 4

_kept: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_size = 0
_lock = threading.Lock()
_stem_lock = threading.Lock()


def best(db: sqlite3.Connection, segment_key: tuple, n: int, words: list[str], limit: int, rows_with,
         deleted: np.ndarray) -> list[tuple[int, float]] | None:
    """Segment ``n``'s best ``limit`` rows for any of ``words`` as (id, rank), best first, rank
    being FTS5's (bm25(), lower is better); ``deleted`` ids left out. None when the words not
    kept yet hold more than COLD_ROWS rows (``rows_with(word)``: how many): rank by FTS5 then."""
    held = {word: _held(segment_key, word) for word in words}
    cold = [word for word, found in held.items() if found is None]
    cold_rows = sum(rows_with(word) for word in cold)
    if cold_rows > COLD_ROWS:
        # read for next time, off the path; not when this question's words alone would fill half
        # the budget (at 1M chunks they can): each would push out another, read again each time
        if cold_rows + sum(found[0].size for found in held.values() if found is not None) <= MAX_POSTINGS // 2:
            _later().submit(_read_all, db, segment_key, n, cold)
        return None
    for word in cold:
        held[word] = _read(db, segment_key, n, word)
    ids = np.concatenate([held[word][0] for word in words])
    if not ids.size:
        return []
    scores = np.concatenate([held[word][1] for word in words])
    rows, totals = _sums(ids, scores)  # bm25() is negative: the lowest total is the best
    if deleted.size:
        live = ~np.isin(rows, deleted)
        rows, totals = rows[live], totals[live]
    if rows.size > limit:
        keep = np.argpartition(totals, limit - 1)[:limit]
        rows, totals = rows[keep], totals[keep]
    order = np.lexsort((rows, totals))
    return list(zip(rows[order].tolist(), totals[order].tolist()))


def _sums(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row once, with the sum of its scores."""
    top = int(ids.max())
    if top <= DENSE_IDS * ids.size:  # count by id: no sort (half a million rows to sum at 100k chunks)
        rows = np.flatnonzero(np.bincount(ids, minlength=top + 1))
        return rows, np.bincount(ids, weights=scores, minlength=top + 1)[rows]
    rows, which = np.unique(ids, return_inverse=True)
    return rows, np.bincount(which, weights=scores)


def forget_except(keep: set[tuple]) -> None:
    """Drop the words of segments no open generation uses any more."""
    global _size
    with _lock:
        for key in [key for key in _kept if key[0] not in keep]:
            _size -= _kept.pop(key)[0].size


def _held(segment_key: tuple, word: str):
    """The kept (ids, scores) of ``word`` in a segment, under its stems; None when not kept."""
    return _get((segment_key, stems(word)))


def _get(key: tuple):
    with _lock:
        found = _kept.get(key)
        if found is not None:
            _kept.move_to_end(key)
        return found


@functools.cache
def _later() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="docchat-postings")


def reads_done() -> None:
    """Wait for the words being read off the questions' path (benchmarks: an answer takes seconds)."""
    _later().submit(lambda: None).result()


def _read_all(db: sqlite3.Connection, segment_key: tuple, n: int, words: list[str]) -> None:
    try:
        for word in words:
            if _held(segment_key, word) is None:  # another question's reading may have kept it
                _read(db, segment_key, n, word)
    except sqlite3.ProgrammingError:  # the store was closed meanwhile: nothing to keep
        pass


def warm(db: sqlite3.Connection, segments: list[tuple[tuple, int, Path]], rarely_asked: frozenset[str]) -> None:
    """Read ahead, in the background, the scores of the words many chunks of these segments
    (``(segment_key, n, rows file)``) hold; the stems of ``rarely_asked`` words last."""
    _later().submit(_warm, db, segments, rarely_asked)


def _warm(db: sqlite3.Connection, segments: list[tuple[tuple, int, Path]], rarely_asked: frozenset[str]) -> None:
    # A question drops its stop words, but a stop word's stem can be another word's too ("on",
    # "one"): those come last rather than never.
    last = {stems(word) for word in rarely_asked}
    try:
        common = []
        for segment_key, n, rows_file in segments:
            common += [((term,) in last, -rows, term, segment_key, n) for term, rows in _common_terms(rows_file)]
        budget = WARM_POSTINGS
        for _, minus_rows, term, segment_key, n in sorted(common):
            # a term FTS5 stores is read by asking for it, so only one that stems to itself
            if -minus_rows > budget or stems(term) != (term,):
                continue
            if _held(segment_key, term) is None:
                _read(db, segment_key, n, term)
            budget -= -minus_rows
    except sqlite3.Error:  # the store was closed, or its generation removed, meanwhile: nothing to keep
        pass


def _common_terms(rows_file: Path) -> list[tuple[str, int]]:
    """The terms more than WARM_MIN_ROWS rows of a segment hold, with their row counts, from FTS5's
    vocabulary table. On a connection of its own: creating that (temporary) table on the store's
    shared one aborted a page's query running beside it ("abort due to ROLLBACK")."""
    own = sqlite3.connect(rows_file.as_uri() + "?immutable=1", uri=True)
    try:
        own.execute("CREATE VIRTUAL TABLE temp.vocabulary USING fts5vocab('main', 'chunks_fts', 'row')")
        return own.execute("SELECT term, doc FROM temp.vocabulary WHERE doc > ?", [WARM_MIN_ROWS]).fetchall()
    finally:
        own.close()


@functools.lru_cache(maxsize=65_536)
def stems(word: str) -> tuple[str, ...]:
    """The terms FTS5 looks up for ``word``: its tokenizer's tokens, stemmed ("work_mem": work, mem)."""
    with _stem_lock:
        db = _stemmer()
        db.execute("INSERT INTO words(rowid, word) VALUES (1, ?)", [word])
        found = tuple(term for term, in db.execute("SELECT term FROM terms WHERE doc = 1 ORDER BY offset"))
        db.execute("DELETE FROM words")
    return found


@functools.cache
def _stemmer() -> sqlite3.Connection:
    """An in-memory FTS5 table with the index's tokenizer (vectorstore/schema.py), to see a word's stems."""
    from vectorstore.schema import FTS_TOKENIZER

    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute(f"CREATE VIRTUAL TABLE words USING fts5(word, tokenize='{FTS_TOKENIZER}')")
    db.execute("CREATE VIRTUAL TABLE terms USING fts5vocab(words, 'instance')")
    return db


def _read(db: sqlite3.Connection, segment_key: tuple, n: int, word: str) -> tuple[np.ndarray, np.ndarray]:
    """Every row of segment n holding ``word``, with the word's bm25() there; kept for next time."""
    global _size
    found = db.execute(f"SELECT rowid, bm25(chunks_fts) FROM s{n}.chunks_fts WHERE chunks_fts MATCH ?",
                       [f'"{word}"']).fetchall()
    pairs = np.array(found, dtype=np.float64).reshape(-1, 2)
    entry = (pairs[:, 0].astype(np.int64), pairs[:, 1].copy())
    key = (segment_key, stems(word))
    with _lock:
        if key not in _kept:
            _kept[key] = entry
            _size += entry[0].size
        while _size > MAX_POSTINGS and len(_kept) > 1:
            _size -= _kept.popitem(last=False)[1][0].size
    return entry
