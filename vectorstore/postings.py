"""Keyword ranking from cached per-word scores: FTS5's BM25, without FTS5's cost per query.

FTS5 ranks an OR of the question's words by computing bm25() for every row that holds any of
them: half of a 12k-chunk index for a typical question, 11 ms p50 and 20 ms p95 on this
machine, the largest part of a retrieval. BM25 is a sum over the query's words of one score
per (word, row), and in a segment (immutable) that score never changes. So each word's rows
and scores are read once, with a one-word FTS5 query, and kept; a question's ranking is then
a sum of a few arrays (0.6 ms p50, bench/RESULTS-scale.md, Round 6): the ranking FTS5 gives,
with its scores (equal to the last bit on the PostgreSQL and git questions; a sum in another
order may differ in the last one).

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

import numpy as np

# Per (word, row) one id and one score: 16 bytes; 4M of them is 64 MB.
MAX_POSTINGS = 4_000_000
# Reading a word's rows costs ~2-3 us per row, against ~1.8 us per matched row for FTS5's own
# OR query (where a row holding several words counts once): up to this many rows (~5 ms) are
# read while a question waits.
COLD_ROWS = 2_000
# Row ids are summed by counting (an array as long as the largest id) when the largest is at
# most this many times the number of scores, else by sorting.
DENSE_IDS = 4

_kept: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_size = 0
_lock = threading.Lock()


def best(db: sqlite3.Connection, segment_key: tuple, n: int, words: list[str], limit: int, rows_with,
         deleted: np.ndarray) -> list[tuple[int, float]] | None:
    """Segment ``n``'s best ``limit`` rows for any of ``words`` as (id, rank), best first, rank
    being FTS5's (bm25(), lower is better); ``deleted`` ids left out. None when the words not
    kept yet hold more than COLD_ROWS rows (``rows_with(word)``: how many): rank by FTS5 then."""
    held = {word: _get((segment_key, word)) for word in words}
    cold = [word for word, found in held.items() if found is None]
    if sum(rows_with(word) for word in cold) > COLD_ROWS:
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
            if _get((segment_key, word)) is None:
                _read(db, segment_key, n, word)
    except sqlite3.ProgrammingError:  # the store was closed meanwhile: nothing to keep
        pass


def _read(db: sqlite3.Connection, segment_key: tuple, n: int, word: str) -> tuple[np.ndarray, np.ndarray]:
    """Every row of segment n holding ``word``, with the word's bm25() there; kept for next time."""
    global _size
    found = db.execute(f"SELECT rowid, bm25(chunks_fts) FROM s{n}.chunks_fts WHERE chunks_fts MATCH ?",
                       [f'"{word}"']).fetchall()
    pairs = np.array(found, dtype=np.float64).reshape(-1, 2)
    entry = (pairs[:, 0].astype(np.int64), pairs[:, 1].copy())
    with _lock:
        if (segment_key, word) not in _kept:
            _kept[(segment_key, word)] = entry
            _size += entry[0].size
        while _size > MAX_POSTINGS and len(_kept) > 1:
            _size -= _kept.popitem(last=False)[1][0].size
    return entry
