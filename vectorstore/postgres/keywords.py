"""Keyword search in PostgreSQL, ranked by BM25 as the local store's SQLite FTS5 ranks it.

``ts_rank_cd`` has no inverse document frequency: in an OR of a question's words, a chunk full
of common words ("table", "index") outranks one holding the rare name the question is about.
So the ranking here is FTS5's ``bm25()`` (k1 = 1.2, b = 0.75, the same IDF formula), computed
in SQL from each chunk's tsvector (term frequencies), its length in words, and per-lexeme
chunk counts the writer keeps in the same transaction as each file's sync
(``docchat_terms`` + ``docchat_term_changes``, see ``schema``).

An OR of common words matches much of a large index, and ranking every match is what made
keyword search slow at 100k chunks. Ranking is exact but reads only what it must (MaxScore):
the query's lexemes are taken rarest first, and only chunks holding one of the rare ones are
ranked; a chunk holding none of them can score at most the sum of the other lexemes' upper
bounds (``idf * (k1 + 1)``), so once the k-th best score reaches that sum the top k is final.
Otherwise the ranking runs once more over the chunks holding any lexeme that could still lift
a chunk above the k-th score, as far as ``CANDIDATE_BUDGET`` allows: the top k is exact unless a
query's words are all common in a large index, where chunks holding only its commonest words
are left out.
"""

from __future__ import annotations

import math
import re

from vectorstore.schema import source_filter

K1, B = 1.2, 0.75  # FTS5's bm25() defaults
# Chunks ranked per query at most, counted as the sum of the lexemes' chunk counts, beyond the
# rarest lexemes needed to fill the top k. Past it, chunks that hold only the query's most common
# words are not ranked (BM25 gives those words the least weight); bench/postgres_store.py
# measures the latency this buys and the retrieval it keeps.
CANDIDATE_BUDGET = 5_000
TOKEN = re.compile(r"[^\W_]+")  # a chunk's length in words, as FTS5's unicode61 tokenizer splits it
_WORD = re.compile(r"\w+", re.UNICODE)


def word_count(text: str) -> int:
    return len(TOKEN.findall(text))


def quoted(lexeme: str) -> str:
    """A lexeme as a tsquery operand, taken literally (already stemmed)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def statistics(conn, lexemes: list[str]) -> tuple[int, float, dict[str, int]]:
    """Chunks in the index, their mean length in words, and how many chunks hold each lexeme."""
    keys = ["", *lexemes]
    rows = conn.execute(
        "SELECT lexeme, sum(chunks), sum(words) FROM (SELECT lexeme, chunks, words FROM docchat_terms "
        "WHERE lexeme = ANY(%s) UNION ALL SELECT lexeme, chunks, words FROM docchat_term_changes "
        "WHERE lexeme = ANY(%s)) AS s GROUP BY lexeme", [keys, keys]).fetchall()
    found = {lexeme: (int(chunks), int(words)) for lexeme, chunks, words in rows}
    total, words = found.pop("", (0, 0))
    return total, (words / total if total else 1.0), {lexeme: n for lexeme, (n, _) in found.items() if n > 0}


def idf(total: int, holding: int) -> float:
    """FTS5's inverse document frequency (never below a tiny positive weight)."""
    value = math.log((total - holding + 0.5) / (holding + 0.5))
    return value if value > 0 else 1e-6


_RANK = """
SELECT c.id, c.text, c.metadata, ranked.score FROM (
    SELECT c.id, sum(w.idf * t.tf * %(k1p)s / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * c.words / %(avgdl)s))) AS score
    FROM docchat_chunks c
    CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, 'A', %(lexemes)s::text[]), '{{a}}')) AS u
    JOIN unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS w (lexeme, idf) ON w.lexeme = u.lexeme
    CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float8 AS tf) AS t
    WHERE c.tsv @@ %(match)s::tsquery AND {where}
    GROUP BY c.id, c.words ORDER BY score DESC, c.id LIMIT %(k)s
) AS ranked JOIN docchat_chunks c ON c.id = ranked.id ORDER BY ranked.score DESC, c.id
"""


def bm25_search(conn, query: str, k: int, sources: list[str] | None = None) -> list[tuple]:
    """(id, text, metadata, score) of the k chunks with the best BM25 score for any of the
    query's words (English stemming and stop words), best first."""
    words = " ".join(dict.fromkeys(_WORD.findall(query.lower())))
    if not words or k <= 0:
        return []
    lexemes = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [words]).fetchone()[0]
    total, avgdl, holding = statistics(conn, lexemes)
    if not holding:
        return []
    weights = {lexeme: idf(total, n) for lexeme, n in holding.items()}
    rarest = sorted(weights, key=lambda lexeme: (-weights[lexeme], lexeme))
    bound = [w * (K1 + 1) for w in (weights[lexeme] for lexeme in rarest)]
    where, filter_params = source_filter(sources, "c.source", mark="%(source_{})s")
    where = where.format(*range(len(filter_params)))
    params = {"k1p": K1 + 1, "k1": K1, "b": B, "avgdl": max(avgdl, 1e-9), "lexemes": rarest,
              "idfs": [weights[lexeme] for lexeme in rarest], "k": k,
              **{f"source_{n}": value for n, value in enumerate(filter_params)}}
    # Few matches in all: rank them all. Otherwise rank the chunks holding the rarest lexemes
    # that together can fill the top k; then, if the k-th score does not rule out chunks holding
    # only the other lexemes, once more with every lexeme those could outscore it with (MaxScore:
    # scores only rise with more candidates), as far as the candidate budget allows.
    matches = [holding[lexeme] for lexeme in rarest]
    if sum(matches) <= CANDIDATE_BUDGET:
        return _rank(conn, where, params, rarest)
    used = 1
    while used < len(rarest) and sum(matches[:used]) < k:
        used += 1
    rows = _rank(conn, where, params, rarest[:used])
    threshold = rows[k - 1][3] if len(rows) >= k else 0.0
    needed = len(rarest)
    while needed > used and sum(bound[needed - 1:]) <= threshold:
        needed -= 1  # chunks holding only rarest[needed - 1:] cannot pass the k-th score
    wider = used
    while wider < needed and sum(matches[:wider + 1]) <= CANDIDATE_BUDGET:
        wider += 1
    return rows if wider == used else _rank(conn, where, params, rarest[:wider])


def _rank(conn, where: str, params: dict, candidates: list[str]) -> list[tuple]:
    """The top k by BM25 over every query lexeme, among the chunks holding one of ``candidates``."""
    match = " | ".join(quoted(lexeme) for lexeme in candidates)
    return conn.execute(_RANK.format(where=where), {**params, "match": match}).fetchall()
