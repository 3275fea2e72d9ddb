"""Typed request and response bodies of the HTTP API (they make the OpenAPI schema).

Answers and sources are not re-declared field by field: they are ``Answer.to_dict()`` and
``Source.to_dict()``, so a field the engine adds later reaches API clients unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AnswerRecord = dict[str, Any]  # Answer.to_dict(): answer, sources, cited, thread_id, timings, ...
SourceRecord = dict[str, Any]  # Source.to_dict() plus the chunk "text"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # A string, or OpenAI's list of content parts ({"type": "text", "text": ...}); other parts are ignored.
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completions request; fields docchat has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field("docchat", description="`docchat` (see GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1, description="the last user message is the question; "
                                        "earlier user/assistant pairs are the conversation")
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1, description="only one answer per request")
    # docchat's own fields (OpenAI clients send them with `extra_body`)
    sources: list[str] | None = Field(None, description="only these documents or folder prefixes, "
                                      "e.g. [\"guides/\", \"faq.html\"]")
    thread_id: str | None = Field(None, description="continue this stored conversation; earlier "
                                  "messages in the request are then not used")
    store: bool = Field(False, description="keep the conversation as a docchat thread (its id is "
                        "returned in `docchat.thread_id`); by default it is not kept")


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    k: int | None = Field(None, ge=1, le=100, description="how many chunks (default DOCCHAT_K)")
    sources: list[str] | None = Field(None, description="only these documents or folder prefixes")
    score_threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                          description="default DOCCHAT_SCORE_THRESHOLD; -1 returns every chunk ranked")


class SearchResponse(BaseModel):
    query: str
    sources: list[SourceRecord]


class DocumentRecord(BaseModel):
    id: str = Field(description="the document's path inside its folder; use it in DELETE /v1/documents/{id}")
    source: str
    root: str
    title: str
    chunks: int
    size: int
    ingested_at: str


class DocumentList(BaseModel):
    documents: list[DocumentRecord]


class Rejected(BaseModel):
    name: str
    reason: str


class UploadResponse(BaseModel):
    saved: list[str] = Field(description="the names the files were saved under (cleaned)")
    rejected: list[Rejected]
    ingest: dict[str, Any] | None = Field(description="the ingest summary; null when nothing was saved")


class DeleteDocumentResponse(BaseModel):
    removed: str
    root: str
    file_deleted: bool = Field(description="true when the file was in the documents folder and was deleted too")


class ThreadRecord(BaseModel):
    id: str
    title: str
    created: str
    updated: str


class ThreadList(BaseModel):
    threads: list[ThreadRecord]


class ThreadMessage(BaseModel):
    role: str
    content: str
    answer: AnswerRecord | None = None


class ThreadDetail(BaseModel):
    thread: ThreadRecord
    messages: list[ThreadMessage]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    docchat: dict[str, str] = Field(description="the chat and embedding models behind it")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
