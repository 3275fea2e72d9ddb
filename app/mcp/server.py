"""docchat's documents for MCP clients (desktop agents, IDE assistants), with the official `mcp` SDK.

Tools: ``search_documents``, ``read_document``, ``list_documents``, ``ask`` (an answer with its
sources). Each indexed document is also a resource, ``docchat://documents/{path}``. All of it
goes through the same ``Engine`` as the page and the CLI.

A docchat error reaches the client as the tool's (or resource's) error text, with its fix.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError

from app.api import openai_chat
from app.api.answering import Answering
from app.errors import DocchatError

RESOURCE_PREFIX = "docchat://documents/"
READ_MAX_CHARS = 20_000  # what read_document returns at most; page or section narrow it down
MAX_SEARCH_K = 20

INSTRUCTIONS = (
    "docchat holds the user's own documents. Use search_documents to find passages (cite them by "
    "their source), read_document to read one document, list_documents to see what exists, and ask "
    "for a complete answer with sources written by docchat's own model."
)


@contextmanager
def _as_tool_error():
    try:
        yield
    except DocchatError as exc:
        raise ToolError(str(exc)) from exc


class DocchatMCP(MCPServer):
    """An MCP server whose resource list is the index's current document list."""

    def __init__(self, answering: Answering):
        super().__init__(name="docchat", instructions=INSTRUCTIONS, log_level=answering.engine.settings.log_level)
        self.answering = answering

    async def list_resources(self):
        import anyio.to_thread
        from mcp_types import Resource

        documents = await anyio.to_thread.run_sync(self._documents)
        return await super().list_resources() + [
            Resource(uri=document_uri(d["source"]), name=d["source"], title=d["title"] or None,
                     mime_type="text/plain", description=f"{d['chunks']} chunks, from {d['root']}")
            for d in documents
        ]

    def _documents(self) -> list[dict]:
        from app.api.documents import listing

        return listing(self.answering.fresh())


def document_uri(source: str) -> str:
    return RESOURCE_PREFIX + quote(source, safe="/")


def build_server(engine) -> DocchatMCP:
    """The MCP server over ``engine``: its four tools and the documents as resources."""
    answering = Answering(engine)
    server = DocchatMCP(answering)

    @server.tool()
    def search_documents(query: str, k: int = 4, sources: list[str] | None = None) -> list[dict]:
        """Search the user's documents (hybrid: meaning and keywords). Returns the best passages,
        best first, each with its document path (`source`), page or heading, score and text.

        Args:
            query: what to look for, a question or keywords.
            k: how many passages (1-20).
            sources: only these document paths or folder prefixes (like "guides/").
        """
        with _as_tool_error():
            found = answering.fresh().search(query, k=max(1, min(k, MAX_SEARCH_K)), sources=sources)
        return [{**s.to_dict(), "text": s.text} for s in found]

    @server.tool()
    def read_document(source: str, page: int | None = None, section: str | None = None) -> str:
        """Read one document's text as indexed, optionally only a page (PDF) or a section.

        Args:
            source: the document path, as list_documents or search_documents show it.
            page: a 1-based page number (PDFs).
            section: words from a heading; only the text under matching headings is returned.
        """
        with _as_tool_error():
            return document_text(answering.fresh(), source, page=page, section=section)

    @server.tool()
    def list_documents() -> list[dict]:
        """List the indexed documents: path (`source`), folder, title, number of chunks, size."""
        from app.api.documents import listing

        with _as_tool_error():
            return listing(answering.fresh())

    @server.tool()
    def ask(question: str, sources: list[str] | None = None) -> dict[str, Any]:
        """Ask docchat a question: it answers from the documents only, citing sources as [^n]
        footnotes, or says it could not find the answer. Slower than search_documents.

        Args:
            question: the question, standalone.
            sources: only these document paths or folder prefixes.
        """
        with _as_tool_error():
            answer = answering.ask(question, sources=sources)
        record = answer.to_dict()
        record["answer"] = openai_chat.footnote_refs(answer.text) + openai_chat.footnotes(answer)
        return record

    @server.resource(RESOURCE_PREFIX + "{+source}", name="document", mime_type="text/plain",
                     description="An indexed document's text.")
    def document(source: str) -> str:
        try:
            return document_text(answering.fresh(), source)
        except DocumentMissing as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except DocchatError as exc:
            raise ResourceError(str(exc)) from exc

    return server


def document_text(engine, source: str, *, page: int | None = None, section: str | None = None) -> str:
    """A document's indexed text, chunk after chunk, at most READ_MAX_CHARS.

    Read from the index, not the disk: only what was ingested is readable, whatever the path says.
    Neighbouring chunks overlap by DOCCHAT_CHUNK_OVERLAP characters, so a few lines may repeat.
    """
    hits = engine.store.chunks_of(source)
    if not hits:
        raise DocumentMissing(f"No document {source!r} in the index; list_documents shows the paths.")
    if page is not None:
        hits = [h for h in hits if h.metadata.get("page") == page]
    if section:
        wanted = section.lower()
        hits = [h for h in hits if wanted in (h.metadata.get("heading") or "").lower()]
    if not hits:
        return f"{source} has no text on page {page}." if page is not None else \
            f"{source} has no section matching {section!r}."
    text = "\n\n".join(h.text for h in hits)
    if len(text) > READ_MAX_CHARS:
        text = text[:READ_MAX_CHARS] + f"\n\n[... cut at {READ_MAX_CHARS} characters; ask for a page or section]"
    return text


class DocumentMissing(DocchatError):
    """read_document / the resource: no such document in the index."""
