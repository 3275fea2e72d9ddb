"""What the engine hands back: the answer record and the events of a streamed answer."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field


SNIPPET_CHARS = 240


@dataclass
class Source:
    """One chunk the model saw, numbered as the model saw it ([n])."""

    n: int
    source: str  # path relative to its ingested folder
    root: str  # the ingested folder (absolute)
    page: int | None
    heading: str | None
    score: float
    snippet: str  # the first SNIPPET_CHARS of the chunk, on one line
    text: str  # the chunk text as given to the model
    chunk_id: int | None = None

    @classmethod
    def from_hit(cls, n: int, hit) -> "Source":
        meta = hit.metadata or {}
        return cls(
            n=n,
            source=str(meta.get("source", "")),
            root=str(meta.get("root", "")),
            page=meta.get("page"),
            heading=meta.get("heading"),
            score=round(float(hit.score), 4),
            snippet=snippet(hit.text),
            text=hit.text,
            chunk_id=getattr(hit, "chunk_id", None),
        )

    def label(self) -> str:
        """``guide.md p. 3`` / ``guide.md > Install``: how the source is shown to people."""
        if self.page is not None:
            return f"{self.source} p. {self.page}"
        if self.heading:
            return f"{self.source} > {self.heading}"
        return self.source

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "source": self.source,
            "root": self.root,
            "page": self.page,
            "heading": self.heading,
            "score": self.score,
            "snippet": self.snippet,
        }


@dataclass
class Evidence:
    """One supporting sentence: which source, where in its text, and how well it supports."""

    n: int  # the source's number ([n])
    text: str  # the sentence exactly as it stands in the source text
    start: int  # offsets of ``text`` in that source's text
    end: int
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ToolCall:
    """A tool the agent ran: its name, arguments and (shortened) result."""

    name: str
    args: dict
    result: str


@dataclass
class Timings:
    retrieve_ms: float = 0.0  # query embedding + search (+ rewrite excluded)
    first_token_ms: float | None = None  # from the question to the first answer token (the quote, if first)
    model_first_token_ms: float | None = None  # ... to the model's own first token
    total_ms: float = 0.0  # from the question to the end, waits included
    rewrite_ms: float = 0.0
    wait_ms: float = 0.0  # models and index prepared while this question waited (in the two above)
    check_ms: float = 0.0  # answer check and evidence


# What kind of answer a record holds (Answer.kind).
GENERATED = "generated"  # the model's answer, checked (and repaired where that was enough)
EXTRACTIVE = "extractive"  # sentences quoted from the documents: the model's answer failed
NOT_FOUND = "not_found"  # nothing relevant found (the closest passages come with it)
GENERAL = "general"  # general knowledge, marked as such (DOCCHAT_ALLOW_GENERAL_KNOWLEDGE)


@dataclass
class Answer:
    """The record of one answered question; ``to_dict()`` is the ``docchat ask --json`` object."""

    text: str
    sources: list[Source]  # only the chunks the model saw
    cited: list[int]  # the [n] in the text that name a source
    thread_id: str
    rewritten_query: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    grounded: bool = True  # False when it abstained or answered from general knowledge
    prompt_tokens: int | None = None
    citations: str = "model"  # how `cited` was made: "model" ([n] it wrote), "overlap", "quoted", "none"
    kind: str = GENERATED  # GENERATED | EXTRACTIVE | NOT_FOUND | GENERAL
    evidence: list[Evidence] = field(default_factory=list)  # supporting sentences, best first
    problems: list[str] = field(default_factory=list)  # what the check found in the model's text
    closest: list[Source] = field(default_factory=list)  # NOT_FOUND: the nearest passages, with scores
    hint: str | None = None  # NOT_FOUND: how to widen the search
    links: list[str] = field(default_factory=list)  # URLs in the text that a cited source contains

    def evidence_for(self, n: int) -> list[Evidence]:
        return [e for e in self.evidence if e.n == n]

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "sources": [s.to_dict() for s in self.sources],
            "cited": self.cited,
            "thread_id": self.thread_id,
            "rewritten_query": self.rewritten_query,
            "tool_calls": [asdict(t) for t in self.tool_calls],
            "timings": asdict(self.timings),
            "grounded": self.grounded,
            "prompt_tokens": self.prompt_tokens,
            "citations": self.citations,
            "kind": self.kind,
            "evidence": [e.to_dict() for e in self.evidence],
            "problems": self.problems,
            "closest": [s.to_dict() for s in self.closest],
            "hint": self.hint,
            "links": self.links,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Answer":
        """Rebuild a stored record (thread history); source texts are not stored."""
        def sources_of(key):
            return [Source(**{**s, "text": s.get("snippet", "")}) for s in data.get(key, [])]

        sources = sources_of("sources")
        return cls(
            text=data.get("answer", ""),
            sources=sources,
            cited=list(data.get("cited", [])),
            thread_id=data.get("thread_id", ""),
            rewritten_query=data.get("rewritten_query", ""),
            tool_calls=[ToolCall(**t) for t in data.get("tool_calls", [])],
            timings=Timings(**data.get("timings", {})),
            grounded=bool(data.get("grounded", True)),
            prompt_tokens=data.get("prompt_tokens"),
            citations=data.get("citations", "model"),
            kind=data.get("kind", GENERATED if data.get("grounded", True) else NOT_FOUND),
            evidence=[Evidence(**e) for e in data.get("evidence", [])],
            problems=list(data.get("problems", [])),
            closest=sources_of("closest"),
            hint=data.get("hint"),
            links=list(data.get("links", [])),
        )


@dataclass
class Token:
    """A piece of the answer text, as the model produces it."""

    text: str


@dataclass
class ToolCallEvent:
    tool_call: ToolCall


@dataclass
class Done:
    """The last event of a stream."""

    answer: Answer


Event = Token | ToolCallEvent | Done

_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str, sources: list[Source]) -> list[int]:
    """The [n] (and [n, m]) numbers in ``text`` that name one of ``sources``, in order."""
    known = {s.n for s in sources}
    found: list[int] = []
    for match in _CITATION.finditer(text):
        for part in match.group(1).split(","):
            n = int(part)
            if n in known and n not in found:
                found.append(n)
    return found


_HEADING_MARK = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The chunk's start on one line, as a source card shows it: a Markdown heading's "#" marks
    would read as stray characters there ("# The docchat guide docchat is …")."""
    flat = " ".join(_HEADING_MARK.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
