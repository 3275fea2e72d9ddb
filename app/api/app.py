"""The HTTP API: routes over one ``Engine``; OpenAPI at /openapi.json, browsable at /docs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import documents, openai_chat
from app.api.answering import Answering
from app.api.errors import BadRequest, describe, describe_validation, error_body
from app.api.schemas import (
    ChatCompletionRequest,
    DeleteDocumentResponse,
    DocumentList,
    ModelCard,
    ModelList,
    SearchRequest,
    SearchResponse,
    ThreadDetail,
    ThreadList,
    UploadResponse,
)
from app.api.security import RequestGuard
from app.engine import Done, Token
from app.errors import DocchatError

STARTED = 1_700_000_000  # "created" of the model card: a fixed date, the card never changes


def create_app(settings, engine=None) -> FastAPI:
    """The API over ``engine`` (built from ``settings`` when not given), guarded by key and size limits."""
    if engine is None:
        from app.engine import Engine

        engine = Engine(settings)
    answering = Answering(engine)
    app = FastAPI(title="docchat", version="1", description="Chat with your documents: an OpenAI-compatible "
                  "chat endpoint with cited answers, search, documents and conversation threads.")
    app.state.answering = answering
    _error_handlers(app)
    _chat_routes(app, answering)
    _library_routes(app, answering)
    _thread_routes(app, engine)
    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:  # off unless configured: a page on another origin must not read your documents
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    # Outermost: the key and the size limit are checked before any route or body parsing.
    app.add_middleware(RequestGuard, settings=settings)
    return app


def _error_handlers(app: FastAPI) -> None:
    async def as_json(request: Request, exc: Exception):
        status, body = describe(exc)
        return JSONResponse(body, status_code=status)

    app.add_exception_handler(DocchatError, as_json)  # expected: answered, no traceback in the log
    app.add_exception_handler(Exception, as_json)  # a bug: answered the same, traceback logged

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse(describe_validation(exc.errors()), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind, exc.status_code), status_code=exc.status_code)


# ---------------------------------------------------------------- OpenAI-compatible chat
def _chat_routes(app: FastAPI, answering: Answering) -> None:
    settings = answering.engine.settings

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    def models() -> ModelList:
        """The one model served: `docchat` (answers from your documents), and what runs behind it."""
        behind = {"llm_backend": settings.llm_backend, "llm_model": settings.llm_model_name,
                  "embedding_model": settings.embedding_model_name}
        return ModelList(data=[ModelCard(id=openai_chat.MODEL_ID, created=STARTED, owned_by="docchat",
                                         docchat=behind)])

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(body: ChatCompletionRequest):
        """Answer the last user message from the documents, with sources (OpenAI's format, streaming or not).

        The text cites sources as Markdown footnotes; `docchat` holds the answer record
        (sources, cited, timings, ...). In a stream it comes with the last chunk.
        """
        if body.model != openai_chat.MODEL_ID:
            raise _unknown_model(body.model)
        question, history = openai_chat.conversation(body.messages)
        events = answering.events(question, history=history, thread_id=body.thread_id, keep=body.store,
                                  sources=body.sources, temperature=body.temperature)
        request_id = openai_chat.completion_id()

        def count(text: str) -> int:  # asked only once answered: the model (and tokenizer) is loaded by then
            return answering.engine.count_tokens(text)

        if not body.stream:
            answer = await _answer_of(events)
            usage = openai_chat.usage(answer, count)
            return openai_chat.completion(answer, request_id=request_id, model=body.model, usage=usage)
        # Wait for the first event before answering 200: an error found while retrieving (no
        # index, unknown thread) is then a proper HTTP error, not a broken stream.
        first = await anext(events)
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        stream = _sse(first, events, request_id, body.model, include_usage, count)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _unknown_model(name: str) -> BadRequest:
    return BadRequest(f"The model {name!r} is not served here; this server answers as {openai_chat.MODEL_ID!r}.",
                      fix=f"Set model={openai_chat.MODEL_ID!r} in the client.")


async def _answer_of(events: AsyncIterator):
    async for event in events:
        if isinstance(event, Done):
            return event.answer
    raise AssertionError("stream ended without Done")  # pragma: no cover


def _sse_data(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(first, events: AsyncIterator, request_id: str, model: str, include_usage: bool, count):
    """The answer as server-sent ``chat.completion.chunk`` events, then ``[DONE]``."""
    ids = {"request_id": request_id, "model": model}
    footnoted = openai_chat.FootnoteStream()
    yield _sse_data(openai_chat.chunk(**ids, delta={"role": "assistant", "content": ""}))
    try:
        event = first
        while True:
            if isinstance(event, Token) and (text := footnoted.feed(event.text)):
                yield _sse_data(openai_chat.chunk(**ids, delta={"content": text}))
            elif isinstance(event, Done):
                answer = event.answer
                if tail := footnoted.close(answer):
                    yield _sse_data(openai_chat.chunk(**ids, delta={"content": tail}))
                yield _sse_data(openai_chat.chunk(**ids, delta={}, finish_reason="stop", docchat=answer.to_dict()))
                if include_usage:
                    usage = openai_chat.usage(answer, count)
                    yield _sse_data({**openai_chat.chunk(**ids, delta={}), "choices": [], "usage": usage})
                break
            event = await anext(events)
    except Exception as exc:  # noqa: BLE001 -- the status line is sent: report it in the stream
        _status, body = describe(exc)
        yield _sse_data(body)
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------- search and documents
def _library_routes(app: FastAPI, answering: Answering) -> None:
    @app.post("/v1/search", response_model=SearchResponse, tags=["docchat"])
    def search(body: SearchRequest) -> SearchResponse:
        """The chunks a query retrieves (hybrid dense + keyword, threshold, filters), best first; no LLM."""
        found = answering.fresh().search(body.query, k=body.k, sources=body.sources,
                                         score_threshold=body.score_threshold)
        return SearchResponse(query=body.query, sources=[{**s.to_dict(), "text": s.text} for s in found])

    @app.get("/v1/documents", response_model=DocumentList, tags=["docchat"])
    def list_documents() -> DocumentList:
        """Every indexed document with its chunk count."""
        return DocumentList(documents=documents.listing(answering.fresh()))

    @app.post("/v1/documents", response_model=UploadResponse, tags=["docchat"])
    async def upload_documents(files: list[UploadFile] = File(description="one or more documents")):
        """Save files into the documents folder (names cleaned, never overwriting) and index them."""
        received = [(f.filename or "upload", await f.read()) for f in files]
        return await run_in_threadpool(documents.upload, answering.fresh(), received)

    @app.delete("/v1/documents/{document_id:path}", response_model=DeleteDocumentResponse, tags=["docchat"])
    def delete_document(document_id: str, root: str | None = Query(None, description="the folder, when the "
                        "same path was ingested from several")) -> DeleteDocumentResponse:
        """Remove a document from the index (and its file, when it is in the documents folder)."""
        return documents.remove(answering.fresh(), document_id, root)


# ---------------------------------------------------------------- threads
def _thread_routes(app: FastAPI, engine) -> None:
    @app.get("/v1/threads", response_model=ThreadList, tags=["docchat"])
    def list_threads() -> ThreadList:
        """Stored conversations, most recent first."""
        return ThreadList(threads=[vars(t) for t in engine.threads.list()])

    @app.get("/v1/threads/{thread_id}", response_model=ThreadDetail, tags=["docchat"])
    def show_thread(thread_id: str) -> ThreadDetail:
        """A conversation's messages; each answer with its record (sources, timings, ...)."""
        thread = engine.threads.get(thread_id)
        messages = [{"role": m.role, "content": m.content, "answer": m.answer}
                    for m in engine.threads.messages(thread_id)]
        return ThreadDetail(thread=vars(thread), messages=messages)

    @app.delete("/v1/threads/{thread_id}", status_code=204, tags=["docchat"])
    def delete_thread(thread_id: str) -> None:
        """Delete a conversation and its messages."""
        engine.threads.delete(thread_id)
