"""Evidence: the sentences of the retrieved chunks that best support an answer.

Every grounded answer carries, per source, the sentence(s) that support it, found by
sentence-level similarity with the embedding model already loaded plus keyword overlap.
They are shown highlighted under the answer, and they are the material of the extractive
answer: when the model's answer fails the check (``app.engine.guard``), shares no content
with any source, or refuses although the documents answer, the user gets the best
supporting sentences quoted with their [n] instead.
"""

from __future__ import annotations

import re
import numpy as np

from app.engine.answer import Evidence
from app.engine.attribution import CITATION, content_words
from app.engine.relevance import stems

# Sentences shorter or longer than these (in words) are not quoted as evidence: a heading
# fragment says nothing, a run-on table row says too much.
MIN_SENTENCE_WORDS = 4
MAX_SENTENCE_CHARS = 400
# A line this short without closing punctuation is a title, not a statement.
TITLE_WORDS = 8
# Weight of embedding similarity against keyword overlap in a sentence's score.
DENSE_WEIGHT = 0.7
# Evidence below this score is not shown: it supports nothing.
MIN_EVIDENCE_SCORE = 0.3
# ... nor below this share of the best sentence's score: it supports far less than that one.
RELATIVE_EVIDENCE_SCORE = 0.6
PER_SOURCE = 2
# The extractive answer quotes at most this many sentences, and only those scoring at
# least this share of the best one.
QUOTED_SENTENCES = 2
QUOTE_RELATIVE = 0.85

# A sentence opening with one of these refers back to the one before: quote both.
_LEANS_BACK = re.compile(r"(?:It|Its|This|That|These|Those|They|Their|He|She|Such)\b")
# Where one quotable sentence ends: sentence punctuation, a blank line, or a new list item,
# heading or table row. A single line break inside a paragraph (hard-wrapped text) is not one.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*(?:[-*+#>|]|\d+[.)]\s))")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each quotable sentence of ``text`` (offsets into ``text``).

    A sentence that leans on the one before (it opens with "It", "This", ...) or answers the
    question just before it (a FAQ) is widened to include that sentence: quoted alone it would
    not say what it is about. Questions themselves are not quotable: a FAQ's question restates
    the user's, it does not answer it.
    """
    spans, previous, start = [], None, 0
    for end in [m.start() for m in _BOUNDARY.finditer(text)] + [len(text)]:
        piece = _trimmed(text, start, end)
        start = end
        if piece is None:
            continue
        piece_start, piece_end = piece
        if previous and (_LEANS_BACK.match(text, piece_start) or text[previous[0]:previous[1]].endswith("?")):
            widened = (previous[0], piece_end)
        else:
            widened = piece
        if _quotable(text[piece_start:piece_end]):
            spans.append(widened)
        previous = piece
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without surrounding blanks and list or heading marks (None for a heading)."""
    while start < end and text[start].isspace():
        start += 1
    if text.startswith("#", start):
        return None
    while start < end and (text[start].isspace() or text[start] in "-*+>|"):
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _quotable(piece: str) -> bool:
    """A statement of a few words: not a question, not a title, not a run-on table."""
    n_words = len(piece.split())
    if piece.endswith("?") or n_words < MIN_SENTENCE_WORDS or len(piece) > MAX_SENTENCE_CHARS:
        return False
    return n_words >= TITLE_WORDS or piece.endswith((".", "!", ";", ":", ")"))


def _keyword_share(target_stems: set[str], sentence: str) -> float:
    if not target_stems:
        return 0.0
    return len(target_stems & stems(sentence)) / len(target_stems)


class EvidenceFinder:
    """Scores the sentences of some sources against texts; the sentences are embedded once.

    ``embed(texts) -> array`` gives L2-normalised vectors (the engine passes its embedder).
    """

    def __init__(self, sources, embed):
        self.embed = embed
        self.candidates = [(s, start, end) for s in sources for start, end in sentence_spans(s.text)]
        self.texts = [s.text[start:end] for s, start, end in self.candidates]
        self.vectors = np.asarray(embed(self.texts), dtype=np.float32) if self.texts else None

    def focus(self, question: str, per_source: int) -> dict[int, list[tuple[int, int]]]:
        """Per source number, the (start, end) of its ``per_source`` sentences most relevant to
        ``question``, in reading order: the part of each passage a small model is given."""
        if self.vectors is None or per_source <= 0:
            return {}
        scores = self._scores([question])
        ranked = sorted(range(len(self.candidates)), key=lambda i: -scores[i])
        kept: dict[int, list[tuple[int, int]]] = {}
        for i in ranked:
            source, start, end = self.candidates[i]
            spans = kept.setdefault(source.n, [])
            if len(spans) < per_source:
                spans.append((start, end))
        return {n: _merged(sorted(spans)) for n, spans in kept.items()}

    def with_next(self, evidence: Evidence) -> Evidence:
        """``evidence`` extended by the sentence after it in the same passage, when they fit in
        one quote: a definition's first sentence names the thing, the next often gives the
        value ("Specifies a fraction of the table size ..." / "The default is 0.2")."""
        following = [(start, end) for s, start, end in self.candidates
                     if s.n == evidence.n and start >= evidence.end]
        if not following:
            return evidence
        source = next(s for s, _, _ in self.candidates if s.n == evidence.n)
        start, end = min(following)
        same_paragraph = not re.search(r"\n\s*(?:\n|[-*+|#>]|\d+[.)]\s)", source.text[evidence.end:start])
        if not same_paragraph or end - evidence.start > MAX_SENTENCE_CHARS * 1.5:
            return evidence
        return Evidence(n=evidence.n, text=source.text[evidence.start:end], start=evidence.start, end=end,
                        score=evidence.score)

    def lead(self, evidence: list[Evidence]) -> list[Evidence]:
        """The quotes an answer opens with: the best sentence and a close runner-up (``quoted``),
        each with the next sentence of its paragraph; two quotes that would overlap in one
        passage (the runner-up is the best one's next sentence) become one."""
        merged: list[Evidence] = []
        for e in (self.with_next(e) for e in quoted(evidence)):
            twin = next((m for m in merged if m.n == e.n and e.start <= m.end and m.start <= e.end), None)
            if twin is None:
                merged.append(e)
                continue
            source = next(s for s, _, _ in self.candidates if s.n == e.n)
            start, end = min(twin.start, e.start), max(twin.end, e.end)
            merged[merged.index(twin)] = Evidence(n=e.n, text=source.text[start:end], start=start, end=end,
                                                  score=max(twin.score, e.score))
        return merged

    def _scores(self, targets: list[str]) -> np.ndarray:
        target_vectors = np.asarray(self.embed(targets), dtype=np.float32)
        dense = (self.vectors @ target_vectors.T).max(axis=1)
        target_stems = set().union(*(stems(t) for t in targets))
        shares = np.array([_keyword_share(target_stems, t) for t in self.texts], dtype=np.float32)
        return DENSE_WEIGHT * dense + (1 - DENSE_WEIGHT) * shares

    def best(self, targets: list[str]) -> list[Evidence]:
        """The sentences that best support ``targets`` (the question, and the answer when there
        is one), at most PER_SOURCE per source, best first."""
        targets = [t for t in targets if t and t.strip()]
        if self.vectors is None or not targets:
            return []
        scores = self._scores(targets)
        scored = [
            Evidence(n=s.n, text=text, start=start, end=end, score=round(float(score), 4))
            for (s, start, end), text, score in zip(self.candidates, self.texts, scores)
        ]
        scored.sort(key=lambda e: -e.score)
        floor = max(MIN_EVIDENCE_SCORE, scored[0].score * RELATIVE_EVIDENCE_SCORE) if scored else 1.0
        kept, per_source = [], {}
        for evidence in scored:
            if evidence.score < floor or per_source.get(evidence.n, 0) >= PER_SOURCE:
                continue
            per_source[evidence.n] = per_source.get(evidence.n, 0) + 1
            kept.append(evidence)
        return kept


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans (a widened sentence and its predecessor) joined into one."""
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def focused_text(text: str, spans: list[tuple[int, int]]) -> str:
    """The passage cut to ``spans``, gaps marked with an ellipsis."""
    return " … ".join(" ".join(text[start:end].split()) for start, end in spans)


def quoted(evidence: list[Evidence]) -> list[Evidence]:
    """The sentences an extractive answer quotes: the best one and any close runner-up."""
    if not evidence:
        return []
    best = evidence[0].score
    chosen: list[Evidence] = []
    for e in evidence:
        if len(chosen) == QUOTED_SENTENCES or e.score < best * QUOTE_RELATIVE:
            break
        if not any(same_words(e.text, c.text) for c in chosen):  # one passage seen in two chunks
            chosen.append(e)
    return chosen


def same_words(a: str, b: str) -> bool:
    wa, wb = content_words(a), content_words(b)
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) >= 0.8


def quote_block(evidence: list[Evidence]) -> str:
    """Each sentence as a Markdown quote with its [n]."""
    return "\n\n".join(f"> {' '.join(e.text.split())} [{e.n}]" for e in evidence)


def extractive_text(evidence: list[Evidence], label: str) -> str:
    """The extractive answer: ``label``, then each quoted sentence with its [n]."""
    return f"{label.strip()}\n\n{quote_block(quoted(evidence))}"


_REFUSAL = re.compile(
    r"\b(?:could not|couldn't|cannot|can't|can not|unable to|did not|didn't) (?:find|locate|answer|determine)\b"
    r"|\b(?:does|do|did) not (?:contain|mention|provide|include|say|specify|state|answer|have)\b"
    r"|\bno (?:information|mention|answer|details?)\b"
    r"|\bnot (?:mentioned|provided|specified|stated|covered|given|found)\b",
    re.I,
)
_ABOUT_DOCUMENTS = re.compile(r"\b(?:documents?|passages?|texts?|context|information|sources?|answer)\b", re.I)


def is_refusal(text: str, not_found: str) -> bool:
    """Whether an answer says the documents do not answer (in the prompt's words or its own)."""
    if not_found and not_found.lower().rstrip(".") in text.lower():
        return True
    first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]
    return bool(_REFUSAL.search(first) and _ABOUT_DOCUMENTS.search(first))


def grounding(text: str, sources) -> float:
    """The share of the answer's content words that occur in the sources (1.0 for no words)."""
    mine = content_words(CITATION.sub(" ", text))
    if not mine:
        return 0.0
    theirs = set().union(*(content_words(s.text) for s in sources)) if sources else set()
    return len(mine & theirs) / len(mine)
