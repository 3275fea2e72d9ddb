"""Keyword search in PostgreSQL, ranked by BM25 as the local store's SQLite FTS5 ranks it.

``ts_rank_cd`` has no inverse document frequency: in an OR of a question's words, a chunk full
of common words ("table", "index") outranks one holding the rare name the question is about.
So the ranking here is FTS5's: the same words (runs of letters and digits, Porter's stemmer, no
stop words in the index: the ``docchat_porter`` configuration, see ``schema``), the same query
(the question's words less the local store's stop words, OR-ed; a word such as ``work_mem`` is
the phrase "work mem"), and ``bm25()`` with k1 = 1.2, b = 0.75 and the same IDF, computed in SQL
from each chunk's tsvector (term frequencies), its length in words, and per-lexeme chunk counts
the writer keeps in the same transaction as each file's sync (``docchat_terms`` +
``docchat_term_changes``). A phrase's frequency in a chunk is taken as its rarest word's.

An OR of common words matches much of a large index, and ranking every match is what made
keyword search slow at 100k chunks. Ranking reads only what it must (MaxScore): the query's
terms are taken rarest first, and only chunks holding one of the rare ones are ranked; a chunk
holding none of them can score at most the sum of the other terms' upper bounds
(``idf * (k1 + 1)``), so once the k-th best score reaches that sum the top k is final.
Otherwise the ranking runs once more over the chunks holding any term that could still lift
a chunk above the k-th score, as far as ``CANDIDATE_BUDGET`` allows: the top k is exact unless a
query's words are all common in a large index, where chunks holding only its commonest words
are left out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vectorstore.postgres.schema import FTS_TEXT
from vectorstore.schema import source_filter
from vectorstore.store import STOPWORDS

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
    SELECT c.id, coalesce((
        SELECT sum(w.idf * %(k1p)s / (1 + %(k1)s * (1 - %(b)s + %(b)s * c.words / %(avgdl)s)
                                       / coalesce(array_length(u.positions, 1), 1)))
        FROM unnest(ts_filter(setweight(c.tsv, 'A', %(lexemes)s::text[]), '{{a}}')) AS u
        JOIN unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS w (lexeme, idf) ON w.lexeme = u.lexeme
    ), 0){phrases} AS score
    FROM docchat_chunks c
    WHERE c.tsv @@ %(match)s::tsquery AND {where}
    ORDER BY score DESC, c.id LIMIT %(k)s
) AS ranked JOIN docchat_chunks c ON c.id = ranked.id ORDER BY ranked.score DESC, c.id
"""
# A phrase's part of the score: its rarest word's frequency stands for the phrase's.
_PHRASE = """ + CASE WHEN c.tsv @@ %(phrase_{n})s::tsquery THEN %(phrase_idf_{n})s * %(k1p)s
    / (1 + %(k1)s * (1 - %(b)s + %(b)s * c.words / %(avgdl)s) / (
        SELECT min(coalesce(array_length(u.positions, 1), 1))
        FROM unnest(ts_filter(setweight(c.tsv, 'A', %(phrase_lexemes_{n})s::text[]), '{{a}}')) AS u)) ELSE 0 END"""


@dataclass
class Term:
    """One OR-ed part of the query: a lexeme, or a phrase (``query`` set) of several."""

    lexemes: list[str]
    query: str | None = None  # the phrase as a tsquery
    copies: int = 1  # distinct query words that came to it ("index", "indexes"): FTS5 weighs each
    chunks: int = 0  # chunks holding it
    weight: float = 0.0  # idf x copies

    @property
    def match(self) -> str:
        return f"({self.query})" if self.query else quoted(self.lexemes[0])


def query_terms(conn, query: str) -> list[Term]:
    """The query's words less stop words (unless nothing else is left), as FTS5 reads them."""
    words = list(dict.fromkeys(_WORD.findall(query.lower())))
    words = [w for w in words if w not in STOPWORDS] or words
    if not words:
        return []
    rows = conn.execute(
        "SELECT tsvector_to_array(to_tsvector('docchat_porter', t)), phraseto_tsquery('docchat_porter', t)::text "
        f"FROM unnest(%s::text[]) AS w, {FTS_TEXT.format('w')} AS t", [words]).fetchall()
    terms: dict[str, Term] = {}
    for lexemes, phrase in rows:
        if not lexemes:
            continue
        key = phrase if len(lexemes) > 1 else lexemes[0]
        if key in terms:
            terms[key].copies += 1
        else:
            terms[key] = Term(sorted(lexemes), phrase if len(lexemes) > 1 else None)
    return list(terms.values())


def bm25_search(conn, query: str, k: int, sources: list[str] | None = None) -> list[tuple]:
    """(id, text, metadata, score) of the k chunks with the best BM25 score for any of the
    query's words, best first."""
    terms = query_terms(conn, query) if k > 0 else []
    if not terms:
        return []
    total, avgdl, holding = statistics(conn, [t.lexemes[0] for t in terms if not t.query])
    for term in terms:
        term.chunks = holding.get(term.lexemes[0], 0) if not term.query else conn.execute(
            "SELECT count(*) FROM docchat_chunks WHERE tsv @@ %s::tsquery", [term.query]).fetchone()[0]
        term.weight = idf(total, term.chunks) * term.copies
    rarest = sorted((t for t in terms if t.chunks), key=lambda t: (-t.weight, t.match))
    if not rarest:
        return []
    where, filter_params = source_filter(sources, "c.source", mark="%(source_{})s")
    where = where.format(*range(len(filter_params)))
    simple = [t for t in rarest if not t.query]
    phrases = [t for t in rarest if t.query]
    params = {"k1p": K1 + 1, "k1": K1, "b": B, "avgdl": max(avgdl, 1e-9), "k": k,
              "lexemes": [t.lexemes[0] for t in simple], "idfs": [t.weight for t in simple],
              **{f"source_{n}": value for n, value in enumerate(filter_params)}}
    for n, term in enumerate(phrases):
        params.update({f"phrase_{n}": term.query, f"phrase_idf_{n}": term.weight, f"phrase_lexemes_{n}": term.lexemes})
    sql = _RANK.format(where=where, phrases="".join(_PHRASE.format(n=n) for n in range(len(phrases))))

    def rank(candidates: list[Term]) -> list[tuple]:
        """The top k over every term, among the chunks holding one of ``candidates``."""
        return conn.execute(sql, {**params, "match": " | ".join(t.match for t in candidates)}).fetchall()

    # Few matches in all: rank them all. Otherwise rank the chunks holding the rarest terms that
    # together can fill the top k; then, if the k-th score does not rule out chunks holding only
    # the other terms, once more with every term those could outscore it with (MaxScore: scores
    # only rise with more candidates), as far as the candidate budget allows.
    matches = [t.chunks for t in rarest]
    if sum(matches) <= CANDIDATE_BUDGET:
        return rank(rarest)
    used = 1
    while used < len(rarest) and sum(matches[:used]) < k:
        used += 1
    rows = rank(rarest[:used])
    threshold = rows[k - 1][3] if len(rows) >= k else 0.0
    bound = [t.weight * (K1 + 1) for t in rarest]
    needed = len(rarest)
    while needed > used and sum(bound[needed - 1:]) <= threshold:
        needed -= 1  # chunks holding only rarest[needed - 1:] cannot pass the k-th score
    wider = used
    while wider < needed and sum(matches[:wider + 1]) <= CANDIDATE_BUDGET:
        wider += 1
    return rows if wider == used else rank(rarest[:wider])


def has_phrase(conn, term: str, sources: list[str] | None = None) -> bool:
    """Whether any chunk (of ``sources``) holds ``term``'s words side by side, in that order."""
    words = _WORD.findall(term.lower())
    if not words:
        return False
    where, params = source_filter(sources, "c.source", mark="%s")
    sql = (f"SELECT 1 FROM docchat_chunks c WHERE c.tsv @@ phraseto_tsquery('docchat_porter', {FTS_TEXT.format('%s')}) "
           f"AND {where} LIMIT 1")
    return conn.execute(sql, [" ".join(words), *params]).fetchone() is not None
