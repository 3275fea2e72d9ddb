"""The Engine over the Ollama and OpenAI backends, over real HTTP on loopback.

Ollama: ChatOllama against the Ollama stand-in (tests/servers) serving the packaged SmolLM2,
which reports no tool support, so the engine retrieves every turn. OpenAI: ChatOpenAI
against the real `transformers serve`. A backend that cannot be reached gives one clear
error naming the setting, from `ask` as from `doctor`.
"""

from __future__ import annotations

import pytest

from app.config import with_overrides
from app.engine import Done, Engine, Token
from app.errors import BackendError
from tests.servers import (  # noqa: F401  (pytest fixtures)
    OLLAMA_CHAT_MODEL,
    closed_port_url,
    converted_model_dir,
    ollama_server,
    openai_server,
)
from tests.test_engine_e2e import corpus_settings  # noqa: F401  (module fixture: the synced corpus)

QUESTION = "How often must the coffee machine be descaled?"


def answer_streamed(engine):
    events = list(engine.stream(QUESTION))
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert isinstance(events[-1], Done)
    return tokens, events[-1].answer


@pytest.mark.slow
def test_engine_answers_through_ollama(corpus_settings, ollama_server, embeddings):
    settings = with_overrides(corpus_settings, llm_backend="ollama", ollama_host=ollama_server.url,
                              llm_model=OLLAMA_CHAT_MODEL)
    engine = Engine(settings, embedder=embeddings)  # the chat model comes from the backend registry
    assert not engine.uses_tools()  # the server says smollm2 cannot call tools
    tokens, answer = answer_streamed(engine)
    assert len(tokens) > 1 and "6 weeks" in answer.text
    assert answer.sources[0].source == "coffee.md"


@pytest.mark.slow
def test_engine_answers_through_openai_compatible_server(corpus_settings, openai_server, embeddings):
    settings = with_overrides(corpus_settings, llm_backend="openai", openai_base_url=openai_server.url,
                              llm_model=openai_server.model_dir, tools="off")
    tokens, answer = answer_streamed(Engine(settings, embedder=embeddings))
    assert len(tokens) > 1 and "6 weeks" in answer.text
    assert answer.sources[0].source == "coffee.md"


@pytest.mark.parametrize("backend, setting", [("ollama", "OLLAMA_HOST"), ("openai", "OPENAI_BASE_URL")])
def test_unreachable_backend_is_one_clear_error(corpus_settings, embeddings, backend, setting):
    url_field = {"ollama": "ollama_host", "openai": "openai_base_url"}[backend]
    settings = with_overrides(corpus_settings, llm_backend=backend, tools="off",
                              **{url_field: closed_port_url()})
    with pytest.raises(BackendError) as caught:
        Engine(settings, embedder=embeddings).ask(QUESTION)
    assert setting in str(caught.value)
