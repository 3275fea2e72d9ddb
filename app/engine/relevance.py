"""Do the documents answer this question at all? The not-found decision.

One number tuned on one corpus does not hold on another: cosine similarities of a small
embedding model sit in different bands per corpus (the samples' right passages scored 0.38
to 0.45, the PostgreSQL docs' 0.5 to 0.8). So the decision weighs three kinds of evidence:

* the dense score of the best chunk (cosine similarity of the query and chunk embeddings);
* keyword evidence: the share of the question's content words that one of the best chunks
  contains (a passage that names what was asked about is relevant even at a modest cosine);
* names the documents never use: a question naming something no chunk contains ("Patroni",
  "MongoDB", "innodb_buffer_pool_size") is very likely about something else, however close
  its embedding lands. Only name-like words count (capitalised inside the question, or with a
  digit or underscore, and file names such as ".gitlab-ci.yml"): on a small corpus plenty of
  plain words ("stored", "long") appear in no chunk, and they say nothing;
* versions the documents never mention ("PostgreSQL 17" asked of the PostgreSQL 15 docs);
* subjects the question names explicitly and the documents never mention: a quoted phrase
  (the "Squash and merge" button) or the thing a user asks how to use, run or install ("use git
  replay to ...", "install Git LFS"). Each is checked as a phrase: its words may all be common
  ("git", "replay") while the documents never put them together, which is what says the thing
  itself is not covered.

The best chunk must reach ``score_threshold``, lowered by up to ``keyword_relief`` as the
keyword coverage rises from a quarter of the question's words to ``min_keyword_coverage``.
A question naming an unknown name gets no relief and needs ``unknown_term_margin`` more; one
naming an unknown version or subject needs UNKNOWN_SUBJECT_MARGIN more.
Figures behind the defaults: bench/abstention.py, bench/RESULTS-answers.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.engine.attribution import STOPWORDS, content_words

# Chunks examined for keyword coverage: the best few by score, where the answer would be.
COVERAGE_DEPTH = 5
# A version or a named subject the documents never mention ("PostgreSQL 17" asked of the 15
# docs, "git replay" of docs older than that command) is a stronger sign than an unknown name:
# what the question asks about is very likely not covered, however close the rest of its words
# land. PostgreSQL's "What new features were added in PostgreSQL 17?" scored 0.70
# (bench/abstention.py); git's "What's new in Git 2.45?" 0.61.
UNKNOWN_SUBJECT_MARGIN = 0.3
# Coverage below this share earns no relief: one shared common word is no evidence.
NO_RELIEF_BELOW = 0.25
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
_TOKEN = re.compile(r"[\w.]*\w")
_STOP = frozenset("me my mine our ours us i".split())
_FILE_NAME = re.compile(r"(?<![\w.])\.?[A-Za-z][\w.-]*\.[a-z]{2,4}\b")
# A command-line option ("--freeze-deps"): documentation that covers a tool lists its options.
_LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_VERSION = re.compile(r"\b([A-Z][\w+#-]*[A-Za-z])\s+v?(\d+(?:\.\d+)*)\b")
_QUOTED = re.compile(r'"([^"]{2,60})"|\u201c([^\u201d]{2,60})\u201d|`([^`]{2,60})`')
# "how do I use X to ...": X, up to three words, is what the user wants to work with. The
# words that end it are the ones that start the rest of the sentence.
_USE = re.compile(r"\b(?:use|using|run|running|install|installing|invoke|enable|enabling|set up|setting up)"
                  r"\s+(?:the\s+|a\s+|an\s+|my\s+|our\s+)?([\w.+-]+(?:\s+[\w.+-]+){0,2})", re.IGNORECASE)
_ENDS_SUBJECT = STOPWORDS | frozenset(
    "while after before during without instead because since until every each all both some any "
    "me my mine us".split())


@dataclass(frozen=True)
class Relevance:
    """The evidence the decision used, and the decision, for one query."""

    answerable: bool
    best_score: float | None  # cosine of the best chunk
    coverage: float  # best share of the question's content words found in one chunk
    unknown_terms: tuple[str, ...]  # question words no chunk contains
    needed: float  # the score the best chunk had to reach, given the evidence


def stem(word: str) -> str:
    """A crude English stem, enough to match "stored" with "store" and "changing" with "change"."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text) if w not in _STOP}


def keyword_coverage(question: str, chunks: list[str]) -> float:
    """The largest share of the question's content words (stemmed) that one chunk contains."""
    wanted = stems(question)
    if not wanted:
        return 0.0
    return max((len(wanted & stems(text)) / len(wanted) for text in chunks), default=0.0)


def name_like(query: str) -> list[str]:
    """The words of ``query`` that look like names: capitalised other than at the start of a
    sentence ("MongoDB", "Patroni"), or holding a digit or underscore ("innodb_buffer_pool_size");
    and file names (".gitlab-ci.yml", "pg_hba.conf") and long options ("--freeze-deps") whole,
    checked as a phrase of their parts."""
    names = [name.lower() for name in _FILE_NAME.findall(query) + _LONG_OPTION.findall(query)]
    for match in _TOKEN.finditer(query):
        starts_sentence = re.search(r"(^|[.?!:])\s*$", query[: match.start()]) is not None
        for word in re.findall(r"\w+", match.group()):
            if len(word) <= 2 or word.isdigit():
                continue
            capitalised = not starts_sentence and any(ch.isupper() for ch in word)
            if capitalised or "_" in word or any(ch.isdigit() for ch in word):
                names.append(word.lower())
    return list(dict.fromkeys(names))


def versions(query: str) -> list[str]:
    """Product versions the query names ("PostgreSQL 17", "Git 2.45"): a capitalised name
    followed by a number. Documentation covers the versions it was written for, so a version it
    never mentions is very likely one it does not cover, however similar the words around it."""
    return list(dict.fromkeys(f"{name} {number}".lower() for name, number in _VERSION.findall(query)))


def subjects(query: str) -> list[str]:
    """What the query names as its subject: quoted phrases, and what it asks how to use, run,
    install or enable ("How do I use git replay to ..." -> "git replay")."""
    found = [next(g for g in groups if g).strip().lower() for groups in _QUOTED.findall(query)]
    for span in _USE.findall(query):
        words = []
        for word in span.split():
            if word.lower() in _ENDS_SUBJECT:
                break
            words.append(word.strip(".,;:!?").lower())
        if words and words[-1]:
            found.append(" ".join(words))
    return list(dict.fromkeys(f for f in found if re.search(r"\w", f)))


def unknown_terms(store, query: str, *, sources=None) -> tuple[str, ...]:
    """The names, versions and subjects in the query that no chunk contains (per the store's
    keyword index; several words must appear as the phrase, side by side)."""
    wanted = name_like(query) + versions(query) + subjects(query)
    return tuple(dict.fromkeys(w for w in wanted if not store.has_term(w, sources=sources)))


def unknown_names(query, store) -> tuple[str, ...]:
    """``unknown_terms`` of a RetrievalQuery, looked up only when they would raise its threshold."""
    return unknown_terms(store, query.text, sources=query.sources) if query.unknown_term_margin > 0 else ()


def relief_share(coverage: float, full_at: float) -> float:
    """0 below NO_RELIEF_BELOW coverage, rising linearly to 1 at ``full_at``."""
    if full_at <= NO_RELIEF_BELOW:
        return 1.0 if coverage >= full_at else 0.0
    return min(1.0, max(0.0, (coverage - NO_RELIEF_BELOW) / (full_at - NO_RELIEF_BELOW)))


def judge(query, candidates: list, store, *, unknown: tuple[str, ...] | None = None) -> Relevance:
    """Whether ``candidates`` (hits scored by cosine) answer ``query`` (a RetrievalQuery).
    ``unknown``: the query's names no chunk holds, when already looked up."""
    best = max((h.score for h in candidates), default=None)
    if best is None:
        return Relevance(False, None, 0.0, (), query.score_threshold)
    top = sorted(candidates, key=lambda h: -h.score)[:COVERAGE_DEPTH]
    coverage = keyword_coverage(query.text, [h.text for h in top])
    unknown = unknown_names(query, store) if unknown is None else unknown
    needed = query.score_threshold
    if set(unknown) & set(versions(query.text) + subjects(query.text)):
        needed += UNKNOWN_SUBJECT_MARGIN
    elif unknown:
        needed += query.unknown_term_margin
    else:
        needed -= query.keyword_relief * relief_share(coverage, query.min_keyword_coverage)
    return Relevance(best >= needed, round(best, 4), round(coverage, 3), unknown, round(needed, 4))
