"""DocchatRetriever: LangChain's standard retriever suite, and docchat's retrieval behind it,
over a real index built with the packaged embedding model."""

from __future__ import annotations

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_tests.integration_tests import RetrieversIntegrationTests

from app.engine import Engine
from app.retriever import DocchatRetriever
from tests.service import library  # noqa: F401


class TestDocchatRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, library, embeddings):
        self.library_settings = library
        self.embeddings = embeddings

    @property
    def retriever_constructor(self) -> type[DocchatRetriever]:
        return DocchatRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"settings": self.library_settings, "embeddings": self.embeddings}

    @property
    def retriever_query_example(self) -> str:
        return "How long are database backups kept?"  # three documents about backups answer it


def test_it_ranks_as_the_engine_does(library, embeddings):
    retriever = DocchatRetriever(settings=library, embeddings=embeddings.embeddings)
    docs = retriever.invoke("How often is the coffee machine descaled?")
    engine_sources = Engine(library, embedder=embeddings).search("How often is the coffee machine descaled?")
    assert [d.metadata["source"] for d in docs] == [s.source for s in engine_sources]
    assert docs[0].metadata["source"] == "coffee.md" and "6 weeks" in docs[0].page_content
    assert docs[0].metadata["score"] >= library.score_threshold and docs[0].metadata["chunk_id"] is not None


def test_filters_restrict_to_documents(library, embeddings):
    retriever = DocchatRetriever(settings=library, embeddings=embeddings.embeddings, sources=["ops/"], score_threshold=-1)
    assert {d.metadata["source"] for d in retriever.invoke("coffee machine")} <= {
        "ops/backups.txt", "ops/restores.md", "ops/retention.md"}
    only_git = retriever.invoke("coffee machine", sources=["git-branches.md"])
    assert {d.metadata["source"] for d in only_git} == {"git-branches.md"}


def test_an_unrelated_question_retrieves_nothing(library, embeddings):
    assert DocchatRetriever(settings=library, embeddings=embeddings.embeddings).invoke("What is the capital of Peru?") == []


def test_it_composes_in_a_chain(library, embeddings):
    chain = DocchatRetriever(settings=library, embeddings=embeddings.embeddings, k=1) | RunnableLambda(
        lambda docs: " / ".join(d.metadata["source"] for d in docs))
    assert chain.invoke("When do nightly backups run?") == "ops/backups.txt"
