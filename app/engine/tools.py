"""The agent's tools: search, list and read the user's documents, and a safe calculator.

Tools are built per turn over the engine's index. Every chunk a tool returns is numbered
in one sequence for the turn (``SeenSources``), so the model can cite it as [n] and the
answer record lists exactly what the model was shown. Results are fenced as untrusted
data like the context of a plain answer.
"""

from __future__ import annotations

import json
from dataclasses import replace

from langchain_core.tools import BaseTool, tool

from app.engine.answer import Source
from app.engine.calculator import CalculatorError, calculate
from app.engine.context import render_chunk
from app.engine.retrieval import RetrievalQuery, retrieve
from app.engine.tokens import truncate_to_tokens

MAX_SEARCH_K = 8
READ_MAX_TOKENS = 800  # read_document returns at most this much text
MAX_LISTED_DOCUMENTS = 200
TOOL_RESULT_CHARS = 300  # how much of a result the answer record keeps


class SeenSources:
    """The chunks shown to the model during one turn, numbered as it saw them."""

    def __init__(self, sources: list[Source] | None = None):
        self.sources: list[Source] = list(sources or [])
        self._by_chunk = {s.chunk_id: s for s in self.sources if s.chunk_id is not None}

    def add(self, hit) -> Source:
        """The source for ``hit``: its existing number if the model already saw it."""
        known = self._by_chunk.get(getattr(hit, "chunk_id", None))
        if known is not None:
            return known
        source = Source.from_hit(len(self.sources) + 1, hit)
        self.sources.append(source)
        if source.chunk_id is not None:
            self._by_chunk[source.chunk_id] = source
        return source


def make_tools(engine, seen: SeenSources) -> list[BaseTool]:
    """The four tools, bound to ``engine``'s index and this turn's ``seen`` sources."""
    prompts = engine.prompts

    def fenced(hits) -> str:
        if not hits:
            return "No matching document text."
        blocks = [render_chunk(prompts, seen.add(hit)) for hit in hits]
        return prompts.tool_result.format(chunks="\n\n".join(blocks))

    @tool
    def search_documents(query: str, k: int = 4, filter: list[str] | None = None) -> str:
        """Search the user's documents. Returns the best matching passages, numbered [n] for citing.

        Args:
            query: what to look for, as a standalone question or keywords.
            k: how many passages to return (1-8).
            filter: optional list of document paths or folder prefixes (like "guides/") to search in.
        """
        request = RetrievalQuery.from_settings(
            query, engine.settings, k=max(1, min(int(k), MAX_SEARCH_K)), sources=filter or None
        )
        return fenced(retrieve(request, store=engine.store, embedder=engine.embedder).hits)

    @tool
    def list_documents() -> str:
        """List the documents in the index: path, title and number of chunks."""
        documents = engine.store.documents()
        lines = [
            json.dumps({"source": d.source, "title": d.title, "chunks": d.chunks}, ensure_ascii=False)
            for d in documents[:MAX_LISTED_DOCUMENTS]
        ]
        more = len(documents) - MAX_LISTED_DOCUMENTS
        if more > 0:
            lines.append(f"... and {more} more documents (use search_documents).")
        return "Document list (untrusted data):\n" + ("\n".join(lines) or "The index is empty.")

    @tool
    def read_document(source: str, page: int | None = None, section: str | None = None) -> str:
        """Read the text of one document, optionally only a page (PDF) or a section heading.

        Args:
            source: the document path, as search_documents or list_documents show it.
            page: a 1-based page number, for PDFs.
            section: words from a heading; only chunks under matching headings are returned.
        """
        hits = engine.store.chunks_of(source)
        if not hits:
            return f"No document {source!r} in the index. Use list_documents to see the paths."
        if page is not None:
            hits = [h for h in hits if h.metadata.get("page") == page]
        if section:
            wanted = section.lower()
            hits = [h for h in hits if wanted in (h.metadata.get("heading") or "").lower()]
        return fenced(_bounded(hits, READ_MAX_TOKENS, engine.count_tokens))

    @tool
    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression, e.g. "(1200 - 350) * 0.2" or "sqrt(2) * 10".

        Args:
            expression: numbers with + - * / // % ** ( ) and sqrt, log, exp, sin, cos, abs, round, min, max.
        """
        try:
            return str(calculate(expression))
        except CalculatorError as exc:
            return f"Calculator error: {exc}"

    return [search_documents, list_documents, read_document, calculator]


def _bounded(hits: list, limit: int, count) -> list:
    """The leading ``hits`` whose texts fit ``limit`` tokens (the last one cut to fit)."""
    kept, used = [], 0
    for hit in hits:
        cost = count(hit.text)
        if used + cost > limit:
            room = limit - used
            if room > 50:
                kept.append(replace(hit, text=truncate_to_tokens(hit.text, room, count)))
            break
        kept.append(hit)
        used += cost
    return kept


def short(result: str, limit: int = TOOL_RESULT_CHARS) -> str:
    """A tool result shortened for the answer record."""
    flat = " ".join(str(result).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
