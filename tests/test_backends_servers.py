"""The ollama and openai backends over real HTTP on loopback.

Ollama: the real `ollama` client and ChatOllama against the Ollama stand-in (tests/servers),
backed by the packaged SmolLM2. OpenAI: ChatOpenAI against the real `transformers serve`.
Error messages: a closed port, a missing key, a 401, an unknown model.
"""

from __future__ import annotations

import ollama
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from app import backends
from app.backends import chat_backend, embedding_backend
from app.config import with_overrides
from app.errors import BackendError
from tests.servers import (  # noqa: F401  (pytest fixtures)
    OLLAMA_CHAT_MODEL,
    OLLAMA_EMBED_MODEL,
    OllamaStandIn,
    ServedModel,
    closed_port_url,
    converted_model_dir,
    ollama_server,
    openai_server,
    refusing_openai,
)

ONE_FACT = [
    SystemMessage("Answer the question using only the context."),
    HumanMessage(
        "Context: The docchat mascot is a purple heron named Ada.\n\n"
        "Question: What is the docchat mascot?"
    ),
]
SECRET = "sk-test-DO-NOT-LEAK-1234567890"


@pytest.fixture
def names_only_ollama(embeddings):
    """An Ollama stand-in listing chat models without loading any (for checks and capabilities);
    its embedding model embeds with the packaged one."""
    server = OllamaStandIn([
        ServedModel("llama3.2:latest", ["completion", "tools"]),
        ServedModel("nomic-embed-text:latest", ["embedding"], embeddings=embeddings),
        ServedModel("smollm2:135m", ["completion"]),
    ]).start()
    yield server
    server.stop()


def ollama_settings(settings, url, **changes):
    return with_overrides(settings, llm_backend="ollama", ollama_host=url, **changes)


def openai_settings(settings, url, **changes):
    return with_overrides(settings, llm_backend="openai", openai_base_url=url, **changes)


def explain(settings, exc) -> str:
    return str(chat_backend(settings).explain_error(exc))


def make_llm(settings):
    """The LangChain chat model the settings' backend builds."""
    return chat_backend(settings).model


# ---------------------------------------------------------------- Ollama, real model behind it


@pytest.mark.slow
def test_ollama_client_lists_shows_and_streams_a_chat(ollama_server):
    client = ollama.Client(host=ollama_server.url)
    assert OLLAMA_CHAT_MODEL in [m.model for m in client.list().models]
    assert client.show(OLLAMA_CHAT_MODEL).capabilities == ["completion"]

    messages = [{"role": m.type.replace("human", "user"), "content": m.content} for m in ONE_FACT]
    parts = list(client.chat(OLLAMA_CHAT_MODEL, messages, stream=True, options={"temperature": 0}))
    assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count > 0
    assert len([p for p in parts if p.message.content]) >= 4  # many parts, not one block
    assert "heron" in "".join(p.message.content for p in parts).lower()

    whole = client.chat(OLLAMA_CHAT_MODEL, messages, options={"temperature": 0, "num_predict": 30})
    assert "heron" in whole.message.content.lower()


@pytest.mark.slow
def test_chat_ollama_streams_the_answer_token_by_token(ollama_server, settings):
    llm = make_llm(ollama_settings(settings, ollama_server.url, llm_model=OLLAMA_CHAT_MODEL,
                                   temperature=0.0, max_new_tokens=40))
    pieces = [chunk.content for chunk in llm.stream(ONE_FACT)]
    assert len([p for p in pieces if p]) >= 4
    assert "heron" in "".join(pieces).lower()
    sent = [body for method, path, body in ollama_server.requests if path == "/api/chat"][-1]
    assert sent["options"]["num_predict"] == 40 and sent["options"]["temperature"] == 0.0


@pytest.mark.slow
def test_ollama_embeddings_match_the_local_model(ollama_server, settings, embeddings):
    remote = embedding_backend(with_overrides(settings, embedding_backend="ollama",
                                              embedding_model=OLLAMA_EMBED_MODEL,
                                              ollama_host=ollama_server.url))
    vector = remote.embed_query("Where is the index stored?")
    local = embeddings.embed_query("Where is the index stored?")
    assert len(vector) == 384
    assert sum(a * b for a, b in zip(vector, local)) > 0.99


# ---------------------------------------------------------------- Ollama: checks and errors


def tools(settings) -> bool:
    return chat_backend(settings).capabilities.tools


def test_ollama_tool_support_comes_from_the_server_once(names_only_ollama, settings):
    assert tools(ollama_settings(settings, names_only_ollama.url, llm_model="llama3.2"))
    assert not tools(ollama_settings(settings, names_only_ollama.url, llm_model="smollm2:135m"))
    assert not tools(ollama_settings(settings, closed_port_url()))
    backend = chat_backend(ollama_settings(settings, names_only_ollama.url, llm_model="llama3.2"))
    asked = lambda: sum(path == "/api/show" for _, path, _ in names_only_ollama.requests)  # noqa: E731
    before = asked()
    assert backend.capabilities.tools and backend.capabilities.tools
    assert asked() == before + 1  # computed once, not on every turn


def test_ollama_check_passes_when_the_models_are_pulled(names_only_ollama, settings):
    good = ollama_settings(settings, names_only_ollama.url, llm_model="llama3.2",
                           embedding_backend="ollama", embedding_model="nomic-embed-text")
    checks = backends.check(good)
    assert [c.name for c in checks] == ["Ollama server", "LLM model", "Embedding model", "Embeddings"]
    assert all(c.ok for c in checks)


def test_ollama_check_says_which_model_to_pull(names_only_ollama, settings):
    checks = backends.check(ollama_settings(settings, names_only_ollama.url, llm_model="mistral"))
    failed = [c for c in checks if not c.ok]
    assert len(failed) == 1
    assert "mistral" in failed[0].detail and "llama3.2:latest" in failed[0].detail
    assert "ollama pull mistral" in failed[0].fix


@pytest.mark.parametrize("backend, setting", [("ollama", "OLLAMA_HOST"), ("openai", "OPENAI_BASE_URL")])
def test_unreachable_server_names_the_url_setting(settings, backend, setting):
    url = closed_port_url()
    configure = ollama_settings if backend == "ollama" else openai_settings
    broken = configure(settings, url)
    with pytest.raises(Exception) as raised:
        make_llm(broken).invoke("hello")
    message = explain(broken, raised.value)
    assert url.removesuffix("/v1") in message and setting in message
    check = chat_backend(broken).check()[-1]
    assert not check.ok and setting in check.detail


def test_unknown_ollama_model_says_ollama_pull(names_only_ollama, settings):
    broken = ollama_settings(settings, names_only_ollama.url, llm_model="mistral")
    with pytest.raises(ollama.ResponseError) as raised:
        make_llm(broken).invoke("hello")
    message = explain(broken, raised.value)
    assert "mistral" in message and "ollama pull mistral" in message


def test_ollama_model_without_tools_says_set_docchat_tools(names_only_ollama, settings):
    broken = ollama_settings(settings, names_only_ollama.url, llm_model="smollm2:135m")

    def lookup(query: str) -> str:
        """Look something up."""
        return query

    with pytest.raises(ollama.ResponseError) as raised:
        make_llm(broken).bind_tools([lookup]).invoke("hello")
    assert "DOCCHAT_TOOLS=off" in explain(broken, raised.value)


# ---------------------------------------------------------------- OpenAI over transformers serve


@pytest.mark.slow
def test_chat_openai_streams_from_transformers_serve(openai_server, settings):
    llm = make_llm(openai_settings(settings, openai_server.url, llm_model=openai_server.model_dir,
                                   temperature=0.0, max_new_tokens=40))
    pieces = [chunk.content for chunk in llm.stream(ONE_FACT)]
    assert len([p for p in pieces if p]) >= 4
    assert "heron" in "".join(pieces).lower()


@pytest.mark.slow
def test_openai_check_passes_against_a_local_server_without_a_key(openai_server, settings):
    checks = chat_backend(openai_settings(settings, openai_server.url)).check()
    assert all(c.ok for c in checks), checks
    assert "no key" in checks[0].detail


@pytest.mark.slow
def test_unknown_openai_model_names_docchat_llm_model(openai_server, settings):
    broken = openai_settings(settings, openai_server.url, llm_model="gpt-9-imaginary")
    with pytest.raises(Exception) as raised:
        make_llm(broken).invoke("hello")
    message = explain(broken, raised.value)
    assert "gpt-9-imaginary" in message and "DOCCHAT_LLM_MODEL" in message


# ---------------------------------------------------------------- OpenAI: errors


def test_openai_itself_calls_tools_and_other_servers_need_docchat_tools_on(settings):
    assert tools(with_overrides(settings, llm_backend="openai"))
    assert not tools(openai_settings(settings, "http://127.0.0.1:8000/v1"))


def test_missing_openai_key_names_openai_api_key(settings):
    with pytest.raises(BackendError) as raised:
        make_llm(with_overrides(settings, llm_backend="openai"))
    assert "OPENAI_API_KEY" in str(raised.value)
    [check] = chat_backend(with_overrides(settings, llm_backend="openai")).check()
    assert not check.ok and "OPENAI_API_KEY" in check.detail


def test_rejected_key_names_openai_api_key_and_never_shows_it(refusing_openai, settings):
    broken = openai_settings(settings, refusing_openai.url, openai_api_key=SECRET)
    with pytest.raises(Exception) as raised:
        make_llm(broken).invoke("hello")
    assert refusing_openai.authorization_seen[-1] == f"Bearer {SECRET}"  # the key was really sent
    message = explain(broken, raised.value)
    assert "401" in message and "OPENAI_API_KEY" in message and SECRET not in message
    checks = chat_backend(broken).check()
    assert not checks[-1].ok and SECRET not in repr(checks)
    assert SECRET not in repr(broken) and SECRET not in str(broken.model_dump())
