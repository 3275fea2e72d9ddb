"""``DocchatRetriever``: a docchat index in anyone's LangChain chain.

    from app.retriever import DocchatRetriever

    retriever = DocchatRetriever(k=3, sources=["guides/"])   # settings from the environment / .env
    docs = retriever.invoke("How do I rebuild the index?")
    docs = retriever.invoke("...", k=8)                     # per call, too

It retrieves exactly as the chat does (``Engine.search``: hybrid dense + keyword, score
threshold, near-duplicate removal, MMR when configured, document filters), so a chain built
on it sees what docchat's own answers would. Each ``Document`` is one chunk: its text, and as
metadata the source record (``source``, ``root``, ``page``, ``heading``, ``score``, ...).
An unrelated query returns no documents rather than the least bad ones.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr


class DocchatRetriever(BaseRetriever):
    """Chunks from a docchat index, ranked by docchat's own retrieval."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    settings: Any = Field(None, description="an app.config.Settings; default: load_settings() (environment, .env)")
    k: int | None = Field(None, ge=1, le=100, description="chunks per query; default DOCCHAT_K")
    sources: list[str] | None = Field(None, description="only these document paths or folder prefixes")
    score_threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                          description="default DOCCHAT_SCORE_THRESHOLD; -1 keeps every chunk")
    embeddings: Any = Field(None, description="a LangChain Embeddings to reuse; default: the configured model")
    _engine: Any = PrivateAttr(None)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, sources: list[str] | None = None,
                                score_threshold: float | None = None) -> list[Document]:
        found = self.engine.search(
            query,
            k=k or self.k,
            sources=sources if sources is not None else self.sources,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold,
        )
        return [Document(page_content=s.text, metadata={**s.to_dict(), "chunk_id": s.chunk_id}) for s in found]

    @property
    def engine(self):
        """The engine searched (built on first use; no chat model is ever loaded by searching)."""
        if self._engine is None:
            from app.engine import Engine

            if self.settings is None:
                from app.config import load_settings

                self.settings = load_settings()
            from app.backends import embedding_backend

            embedder = embedding_backend(self.settings, model=self.embeddings) if self.embeddings else None
            self._engine = Engine(self.settings, embedder=embedder)
        return self._engine
