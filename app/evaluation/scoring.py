"""Scoring: what one answered question earns, and the figures over a whole set.

Pure functions over plain data, so the figures can be checked on hand-made results.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Iterable, Sequence

from app.evaluation.dataset import QAItem

_WORD = re.compile(r"\w+")


def _posix(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/"))).lstrip("./") if path else ""


def matches_gold(source: str, gold: str) -> bool:
    """True when a source path (relative to its ingested root) is the gold page.

    The gold names a file relative to the folder the question set was written for; the
    user may have ingested that folder or one above it, so ``html/sql-insert.html``
    matches the gold ``sql-insert.html`` (whole path components only: ``my-sql-insert.html``
    does not).
    """
    source, gold = _posix(source), _posix(gold)
    return bool(gold) and (source == gold or source.endswith("/" + gold))


def gold_rank(sources: Sequence[str], gold: Iterable[str]) -> int | None:
    """The 1-based rank of the first retrieved source that is a gold page, else None."""
    gold = list(gold)
    for rank, source in enumerate(sources, start=1):
        if any(matches_gold(source, g) for g in gold):
            return rank
    return None


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def phrase_recall(phrase: str, answer: str) -> float:
    """Lenient answer check: the share of the phrase's words that occur in the answer."""
    wanted = words(phrase)
    if not wanted:
        return 0.0
    present = set(words(answer))
    return sum(w in present for w in wanted) / len(wanted)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation; None for no values."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Retrieved:
    """One retrieved chunk, as ranked for the scored turn."""

    rank: int
    source: str
    score: float
    cited: bool = False


@dataclass
class ItemResult:
    """What the system did with one question set item (the last turn is the one scored)."""

    item: QAItem
    query: str  # what was searched for the scored turn
    retrieved: list[Retrieved]
    abstained: bool
    answer: str | None = None  # None when no answer was generated (--no-llm)
    retrieve_ms: list[float] = field(default_factory=list)  # one per engine call
    first_token_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    kind: str | None = None  # the answer's kind: generated | extractive | not_found | general
    problems: list[str] = field(default_factory=list)  # the answer check's findings before repair
    shown_problems: list[str] = field(default_factory=list)  # ... in what the user was shown

    @property
    def gold_rank(self) -> int | None:
        return gold_rank([r.source for r in self.retrieved], self.item.gold)

    @property
    def cited_sources(self) -> list[str]:
        return [r.source for r in self.retrieved if r.cited]

    @property
    def cited_gold(self) -> bool:
        return gold_rank(self.cited_sources, self.item.gold) is not None

    def row(self) -> dict:
        """One line of the per-question table."""
        return {
            "id": self.item.id,
            "kind": self.item.kind,
            "difficulty": self.item.difficulty,
            "turns": list(self.item.turns),
            "query": self.query,
            "gold": list(self.item.gold),
            "gold_rank": self.gold_rank,
            "retrieved": [asdict(r) for r in self.retrieved],
            "answer": self.answer,
            "cited": self.cited_sources,
            "cited_gold": self.cited_gold if self.answer is not None else None,
            "phrase_recall": (
                phrase_recall(self.item.answer, self.answer)
                if self.answer is not None and self.item.answer
                else None
            ),
            "abstained": self.abstained,
            "answer_kind": self.kind,
            "problems": self.problems,
            "shown_problems": self.shown_problems,
            "retrieve_ms": self.retrieve_ms,
            "first_token_ms": self.first_token_ms,
            "total_ms": self.total_ms,
        }


def retrieval_figures(ranks: Sequence[int | None]) -> dict:
    """hit@1, hit@5 and MRR over gold ranks (None = the gold page was not retrieved)."""
    n = len(ranks)
    if not n:
        return {"n": 0, "hit@1": None, "hit@5": None, "mrr": None}
    return {
        "n": n,
        "hit@1": sum(r == 1 for r in ranks if r) / n,
        "hit@5": sum(r <= 5 for r in ranks if r) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


def abstention_figures(results: Sequence[ItemResult]) -> dict:
    """How well the system says "not in the documents": precision and recall on the
    unanswerable items, and how often it wrongly abstained on answerable ones."""
    unanswerable = [r for r in results if not r.item.answerable]
    answerable = [r for r in results if r.item.answerable]
    right = sum(r.abstained for r in unanswerable)
    wrong = sum(r.abstained for r in answerable)
    return {
        "unanswerable": len(unanswerable),
        "abstained_right": right,
        "false_abstentions": wrong,
        "answerable": len(answerable),
        "precision": right / (right + wrong) if right + wrong else None,
        "recall": right / len(unanswerable) if unanswerable else None,
    }


def answer_figures(results: Sequence[ItemResult]) -> dict:
    """What the answer check saw: answers garbled as the model wrote them, answers still
    garbled as shown (the floor is 0), how each answer was made, and false refusals."""
    answered = [r for r in results if r.answer is not None]
    kinds: dict[str, int] = {}
    for r in answered:
        kinds[r.kind or "unknown"] = kinds.get(r.kind or "unknown", 0) + 1
    problems: dict[str, int] = {}
    for r in answered:
        for p in r.problems:
            problems[p] = problems.get(p, 0) + 1
    return {
        "answers": len(answered),
        "garbled_before_check": sum(bool(r.problems) for r in answered),
        "garbled_shown": sum(bool(r.shown_problems) for r in answered),
        "problems": problems,
        "kinds": kinds,
        "false_refusals": sum(r.abstained for r in answered if r.item.answerable),
        "answerable": sum(r.item.answerable for r in answered),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _latency(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def summarize(results: Sequence[ItemResult]) -> dict:
    """Every figure of a run, as a JSON-ready dict."""
    by_kind = {
        kind: [r.gold_rank for r in results if r.item.kind == kind] for kind in ("single", "followup")
    }
    answered = [r for r in results if r.item.answerable and r.answer is not None]
    phrased = [r for r in answered if r.item.answer]
    return {
        "items": len(results),
        "retrieval": {
            "single": retrieval_figures(by_kind["single"]),
            "followup": retrieval_figures(by_kind["followup"]),
            "answerable": retrieval_figures(by_kind["single"] + by_kind["followup"]),
        },
        "citation_accuracy": _mean([float(r.cited_gold) for r in answered]),
        "answer_phrase_recall": _mean([phrase_recall(r.item.answer, r.answer) for r in phrased]),
        "abstention": abstention_figures(results),
        "answers": answer_figures(results),
        "latency_ms": {
            "retrieve": _latency([v for r in results for v in r.retrieve_ms]),
            "first_token": _latency([v for r in results for v in r.first_token_ms if v is not None]),
            "total": _latency([v for r in results for v in r.total_ms]),
        },
    }
