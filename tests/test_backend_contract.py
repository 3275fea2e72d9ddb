"""One conformance suite for every chat and embedding backend (app.backends.contract).

The engine talks to backends through the contract only, so each backend must keep it the same
way: answers stream in pieces and stop at the answer length asked for, tokens are counted,
capabilities are computed once, failures come back as one error that names a setting, the
doctor's check passes on a working set-up, and the cache key is exactly the declared settings.

Run over: the packaged SmolLM2 (huggingface), the real `ollama` client against the Ollama
stand-in (tests/servers, the same SmolLM2 behind it), ChatOpenAI against the real
`transformers serve`, and the scripted stand-in the fast tests use (tests/scripted.py). The
LangChain classes the server backends build also pass langchain-tests' standard unit suites.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from app.backends import BACKENDS, Capabilities, Check, Options, chat_backend, embedding_backend
from app.backends.contract import BackendSettings
from app.config import Settings, with_overrides
from app.errors import BackendError
from tests.scripted import ScriptedBackend, ScriptedChat
from tests.servers import (  # noqa: F401  (pytest fixtures)
    OLLAMA_CHAT_MODEL, OLLAMA_EMBED_MODEL, converted_model_dir, ollama_server, openai_server,
)

ONE_FACT = [
    SystemMessage("Answer the question using only the context."),
    HumanMessage("Context: The docchat mascot is a purple heron named Ada.\n\nQuestion: What is the docchat mascot?"),
]
SETTING = re.compile(r"\b(DOCCHAT_[A-Z_]+|OLLAMA_HOST|OPENAI_[A-Z_]+)\b")


def _settings(base: Settings, kind: str, request) -> Settings:
    if kind == "ollama":
        url = request.getfixturevalue("ollama_server").url
        return with_overrides(base, llm_backend="ollama", llm_model=OLLAMA_CHAT_MODEL, ollama_host=url,
                              embedding_backend="ollama", embedding_model=OLLAMA_EMBED_MODEL)
    if kind == "openai":
        server = request.getfixturevalue("openai_server")
        return with_overrides(base, llm_backend="openai", llm_model=server.model_dir, openai_base_url=server.url)
    return base


CHAT_KINDS = [
    pytest.param("scripted"),
    pytest.param("huggingface", marks=pytest.mark.slow),
    pytest.param("ollama", marks=pytest.mark.slow),
    pytest.param("openai", marks=pytest.mark.slow),
]
EMBEDDING_KINDS = [pytest.param("huggingface"), pytest.param("ollama", marks=pytest.mark.slow)]


@pytest.fixture(params=CHAT_KINDS)
def chat_case(request, settings):
    """(settings, ChatBackend) for each chat backend, the real ones over real models."""
    kind = request.param
    if kind == "scripted":
        settings = with_overrides(settings, temperature=0.0)
        return settings, ScriptedBackend(settings, ScriptedChat("The mascot is a purple heron named Ada."))
    if kind == "huggingface":
        backend = request.getfixturevalue("chat")  # the session's SmolLM2: loaded once
        return with_overrides(settings, temperature=0.0, model_cache_dir=request.getfixturevalue("model_cache_dir")), backend
    settings = _settings(with_overrides(settings, temperature=0.0), kind, request)
    return settings, chat_backend(settings)


@pytest.fixture(params=EMBEDDING_KINDS)
def embedding_case(request, settings):
    kind = request.param
    if kind == "huggingface":
        return settings, request.getfixturevalue("embeddings")
    settings = _settings(settings, kind, request)
    return settings, embedding_backend(settings)


class TestChatContract:
    def test_streams_the_answer_in_pieces_and_stops_at_the_length_asked(self, chat_case):
        _, backend = chat_case
        pieces = [chunk.content for chunk in backend.with_options(Options(0.0, 40)).stream(ONE_FACT)]
        assert len([p for p in pieces if p.strip()]) >= 3, pieces  # many pieces, not one block
        assert "heron" in "".join(pieces).lower()
        short = backend.with_options(Options(0.0, 3)).invoke(ONE_FACT).content
        assert 0 < len(short.split()) <= 3, short

    def test_counts_tokens(self, chat_case):
        _, backend = chat_case
        text = "The docchat mascot is a purple heron named Ada."
        assert backend.count_tokens("") == 0
        assert 0 < backend.count_tokens(text) <= len(text)
        assert backend.count_tokens(text + " " + text) > backend.count_tokens(text)

    def test_capabilities_are_computed_once(self, chat_case):
        settings, backend = chat_case
        capabilities = backend.capabilities
        assert isinstance(capabilities, Capabilities) and backend.capabilities is capabilities
        assert capabilities.streaming and 256 <= capabilities.context_window <= settings.context_window

    def test_a_failure_is_one_error_that_names_a_setting(self, chat_case):
        _, backend = chat_case
        error = backend.explain_error(RuntimeError("the model fell over"))
        assert isinstance(error, BackendError) and "the model fell over" in error.message
        assert SETTING.search(error.message + " " + (error.fix or "")), error
        assert backend.explain_error(error) is error  # already explained: passed on as it is

    def test_the_doctor_check_passes_on_a_working_set_up(self, chat_case):
        _, backend = chat_case
        checks = backend.check()
        assert checks and all(isinstance(c, Check) and c.ok for c in checks), checks

    def test_the_cache_key_is_the_declared_settings_and_no_other(self, chat_case):
        settings, backend = chat_case
        assert type(backend).key_for(settings) == backend.key
        assert type(backend).key_for(with_overrides(settings, k=9, hybrid=False)) == backend.key
        assert type(backend).key_for(with_overrides(settings, temperature=0.9)) != backend.key
        with pytest.raises(AttributeError, match="FIELDS"):
            backend.settings.k  # noqa: B018 -- reading a setting it did not declare is a bug


class TestEmbeddingContract:
    def test_rows_are_normalised_and_a_query_is_embedded_like_a_text(self, embedding_case):
        _, backend = embedding_case
        texts = ["Where is the index stored?", "The train to Lisbon leaves at nine."]
        vectors = backend.embed(texts)
        assert vectors.dtype == np.float32 and vectors.shape[0] == 2 and vectors.shape[1] >= 64
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        query = backend.embed_query(texts[0])
        assert query.shape == (vectors.shape[1],) and float(query @ vectors[0]) > 0.99
        assert backend.embed([]).shape == (0, 0)

    def test_the_doctor_check_names_the_dimension(self, embedding_case):
        _, backend = embedding_case
        checks = backend.check()
        assert all(c.ok for c in checks) and "dimensions" in checks[-1].detail, checks

    def test_a_failure_is_one_error_that_names_a_setting(self, embedding_case):
        _, backend = embedding_case
        error = backend.explain_error(RuntimeError("out of memory"))
        assert "out of memory" in error.message and SETTING.search(error.message + " " + (error.fix or ""))


def test_every_provider_defines_both_roles_on_the_contract():
    from app.backends import ChatBackend, EmbeddingBackend, backend_module

    for name in BACKENDS:
        module = backend_module(name)
        assert issubclass(module.Chat, ChatBackend) and issubclass(module.Embedding, EmbeddingBackend), name
        for role in (module.Chat, module.Embedding):
            for field in role.FIELDS:  # every declared setting exists
                assert hasattr(Settings(_env_file=None), field), f"{name}.{role.__name__}: {field}"


def test_backend_settings_refuse_what_was_not_declared(settings):
    view = BackendSettings(settings, ("llm_model_name",))
    assert view.llm_model_name == settings.llm_model_name
    with pytest.raises(AttributeError):
        view.temperature  # noqa: B018


# -- LangChain's standard unit suites over the classes our backends build ------------------------
# Parameters the standard suite sets itself, in its own tests (passing them too is a TypeError).
SUITE_PARAMS = ("temperature", "max_tokens", "timeout", "max_retries", "stop")


def _built_with(kind: str, role: str, **changes) -> dict:
    settings = Settings(_env_file=None, llm_backend=kind, embedding_backend=kind, **changes)
    backend = chat_backend(settings) if role == "chat" else embedding_backend(settings)
    return {k: v for k, v in backend.model_params().items() if k not in SUITE_PARAMS}


class TestOllamaChatModelStandard(ChatModelUnitTests):
    @pytest.mark.xfail(strict=True, reason="langchain-ollama 1.1.0: _get_ls_params ignores a per-call "
                       "`model` (tracing metadata only; docchat never overrides the model per call)")
    def test_standard_params_model_override(self, model) -> None:
        super().test_standard_params_model_override(model)

    @property
    def chat_model_class(self):
        from langchain_ollama import ChatOllama

        return ChatOllama

    @property
    def chat_model_params(self) -> dict:
        return _built_with("ollama", "chat")


class TestOpenAIChatModelStandard(ChatModelUnitTests):
    @pytest.mark.xfail(strict=True, reason="compares LangChain's serialised form with a stored syrupy "
                       "snapshot, which this project does not keep (the library's format, not docchat's)")
    def test_serdes(self, model, snapshot) -> None:
        super().test_serdes(model, snapshot)

    @property
    def chat_model_class(self):
        from langchain_openai import ChatOpenAI

        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict:
        return _built_with("openai", "chat", openai_api_key="sk-test")


class TestOllamaEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        from langchain_ollama import OllamaEmbeddings

        return OllamaEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return _built_with("ollama", "embedding")


class TestOpenAIEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        from langchain_openai import OpenAIEmbeddings

        return OpenAIEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return _built_with("openai", "embedding", openai_api_key="sk-test")


class TestHuggingFaceEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        from langchain_huggingface import HuggingFaceEmbeddings

        return HuggingFaceEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return _built_with("huggingface", "embedding")
