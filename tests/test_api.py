"""`docchat serve`: the HTTP API with real clients over loopback.

The `openai` client and LangChain's `ChatOpenAI` talk to a real uvicorn serving the app over a
real index; the chat model is the scripted stand-in (tests/service.py) except in the slow test
at the end, which starts `docchat serve` itself with the packaged SmolLM2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from app.config import with_overrides
from tests.service import (  # noqa: F401
    SCRIPTED_REPLY, LoopbackServer, ScriptedChat, library, process_gone, scripted, wait_until_answering,
)
from tests.servers import free_port

QUESTION = "How often is the coffee machine descaled?"
API_KEY = "test-key-4b1d6c0e9a"


def start(settings, embeddings, log_level="warning", **changes) -> LoopbackServer:
    from app.api.app import create_app
    from app.engine import Engine

    settings = with_overrides(settings, **changes) if changes else settings
    engine = Engine(settings, chat=scripted(settings), embedder=embeddings)
    return LoopbackServer(create_app(settings, engine), log_level=log_level)


@pytest.fixture(scope="module")
def api(library, embeddings):
    with start(library, embeddings) as server:
        yield server


@pytest.fixture
def client(api):
    return openai.OpenAI(base_url=api.url + "/v1", api_key="not-needed", max_retries=0)


def ask(client, question=QUESTION, **kw):
    return client.chat.completions.create(model="docchat", messages=[{"role": "user", "content": question}], **kw)


# ---------------------------------------------------------------- chat completions
def test_the_openai_client_gets_an_answer_with_footnoted_sources(client):
    completion = ask(client)

    text = completion.choices[0].message.content
    assert text.startswith("The coffee machine must be descaled every 6 weeks [^1]. Use citric acid [^1][^2].")
    assert "\n\n[^1]: coffee.md > The office coffee machine" in text  # the footnote names the file
    record = completion.docchat  # the structured answer record, next to OpenAI's fields
    assert record["sources"][0]["source"] == "coffee.md" and record["cited"][0] == 1
    assert all(f"\n[^{n}]: " in text for n in record["cited"])  # a footnote for each cited source
    assert record["answer"] == SCRIPTED_REPLY
    assert completion.choices[0].finish_reason == "stop" and completion.model == "docchat"
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0


def test_streaming_gives_the_same_text_piece_by_piece(client):
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))

    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 5  # streamed, not one block
    assert "".join(pieces) == ask(client).choices[0].message.content  # "[1, 2]" split over pieces still converts
    last = [c for c in chunks if c.choices][-1]
    assert last.choices[0].finish_reason == "stop" and last.docchat["sources"][0]["source"] == "coffee.md"
    assert chunks[-1].usage.total_tokens > 0


def test_a_model_that_does_not_cite_still_gets_footnotes_when_streaming(library, embeddings):
    from app.api.app import create_app
    from app.engine import Engine

    # No [n] from the model: the engine attributes the sentence to its chunk afterwards (overlap).
    uncited = ScriptedChat("The office coffee machine must be descaled every 6 weeks with citric acid.")
    with LoopbackServer(create_app(library, Engine(library, chat=scripted(library, uncited), embedder=embeddings))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        whole = ask(client).choices[0].message.content
        streamed = "".join(c.choices[0].delta.content or "" for c in ask(client, stream=True) if c.choices)
    assert "citric acid [^1]." in whole and whole.endswith("[^1]: coffee.md > The office coffee machine")
    assert streamed.endswith("citric acid. [^1]\n\n[^1]: coffee.md > The office coffee machine")


def test_simultaneous_requests_are_all_answered(client):
    from concurrent.futures import ThreadPoolExecutor

    # The embedded model answers one at a time (a lock); the others wait their turn, none fails.
    def streamed(_):
        return "".join(c.choices[0].delta.content or "" for c in ask(client, stream=True) if c.choices)

    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(streamed, range(4))) + [ask(client).choices[0].message.content]
    assert len(set(replies)) == 1 and "[^1]: coffee.md" in replies[0]


def test_when_the_engine_replaces_the_streamed_answer_the_stream_ends_with_the_final_one():
    from app.api.openai_chat import FootnoteStream
    from app.engine import Answer, Source

    source = Source(1, "coffee.md", "/docs", None, "Descaling", 0.8, "snippet", "text")
    final = Answer(text='"Descale it every 6 weeks." [1]', sources=[source], cited=[1], thread_id="t",
                   rewritten_query="q", citations="quoted")
    stream = FootnoteStream()
    streamed = stream.feed("The machine never needs ") + stream.feed("descaling [1].")
    assert stream.close(final) == '\n\n---\n\n"Descale it every 6 weeks." [^1]\n\n[^1]: coffee.md > Descaling'
    assert streamed == "The machine never needs descaling [^1]."


def test_earlier_messages_are_the_conversation(client):
    completion = client.chat.completions.create(model="docchat", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What does the backup policy say?"},
        {"role": "assistant", "content": "Nightly backups are kept for 35 days."},
        {"role": "user", "content": "and when are restores tested?"},
    ])
    # The follow-up was searched together with the earlier question: the history reached the engine.
    assert "backup policy" in completion.docchat["rewritten_query"]


def test_sources_restrict_the_answer_to_documents(client):
    completion = ask(client, "How long are database backups kept?", extra_body={"sources": ["ops/"]})
    assert {s["source"] for s in completion.docchat["sources"]} <= {"ops/backups.txt", "ops/restores.md",
                                                                    "ops/retention.md"}


def test_conversations_are_kept_only_when_asked(client, api):
    ask(client)
    assert httpx.get(api.url + "/v1/threads").json()["threads"] == []

    kept = ask(client, extra_body={"store": True}).docchat["thread_id"]
    follow_up = ask(client, "and what acid?", extra_body={"thread_id": kept})
    thread = httpx.get(f"{api.url}/v1/threads/{kept}").json()
    assert [m["role"] for m in thread["messages"]] == ["user", "assistant"] * 2
    assert thread["messages"][1]["answer"]["sources"][0]["source"] == "coffee.md"
    assert follow_up.docchat["thread_id"] == kept
    assert httpx.delete(f"{api.url}/v1/threads/{kept}").status_code == 204
    assert httpx.get(f"{api.url}/v1/threads/{kept}").status_code == 404


def test_models_lists_docchat_and_what_runs_behind_it(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["docchat"]
    assert models[0].docchat["llm_model"] == "SmolLM2-135M-Instruct"


def test_langchain_chat_openai_works_against_it(api):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=api.url + "/v1", api_key="not-needed", model="docchat", max_retries=0)
    reply = chat.invoke(QUESTION)
    assert "descaled every 6 weeks [^1]" in reply.content and "[^1]: coffee.md" in reply.content
    streamed = "".join(chunk.content for chunk in chat.stream(QUESTION))
    assert streamed == reply.content


def test_request_errors_are_json_with_a_fix(client, api):
    with pytest.raises(openai.BadRequestError) as wrong_model:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "not served here" in wrong_model.value.message and "docchat" in str(wrong_model.value.body)

    with pytest.raises(openai.BadRequestError) as no_question:
        client.chat.completions.create(model="docchat", messages=[{"role": "assistant", "content": "hi"}])
    assert "no user message" in no_question.value.message

    with pytest.raises(openai.NotFoundError):
        ask(client, extra_body={"thread_id": "does-not-exist"}, stream=True)

    invalid = httpx.post(api.url + "/v1/chat/completions", json={"model": "docchat", "messages": []})
    assert invalid.status_code == 400 and "messages" in invalid.json()["error"]["message"]


class FailingMidway(ScriptedChat):
    """The scripted stand-in, losing its backend after a few words (a model server that went away)."""

    def _stream(self, *args, **kwargs):
        for n, chunk in enumerate(super()._stream(*args, **kwargs)):
            if n == 3:
                raise ConnectionError("connection reset by peer")
            yield chunk


def test_a_failure_during_a_stream_reaches_the_client_as_an_error(library, embeddings):
    from app.api.app import create_app
    from app.engine import Engine

    with LoopbackServer(create_app(library, Engine(library, chat=scripted(library, FailingMidway()), embedder=embeddings))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        received = []
        with pytest.raises(openai.APIError) as raised:
            for chunk in ask(client, stream=True):
                received.append(chunk)
    assert len(received) >= 2  # the answer had begun: the error came in the stream, not as a status
    assert "connection reset by peer" in raised.value.message and "DOCCHAT_LLM_MODEL" in raised.value.body["fix"]


def test_without_an_index_the_error_says_how_to_make_one(tmp_path, embeddings, settings):
    with start(settings, embeddings) as server:
        reply = httpx.post(server.url + "/v1/search", json={"query": "anything"})
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as raised:
            ask(client, stream=True)
    assert reply.status_code == 503 and "No index yet" in reply.json()["error"]["message"]
    assert "docchat ingest" in reply.json()["error"]["fix"]
    assert raised.value.status_code == 503


# ---------------------------------------------------------------- search, documents
def test_search_returns_ranked_chunks_with_their_text(api):
    found = httpx.post(api.url + "/v1/search", json={"query": "database backup retention", "k": 2}).json()
    assert len(found["sources"]) == 2 and found["sources"][0]["source"].startswith("ops/")
    assert "35 days" in " ".join(s["text"] for s in found["sources"])
    only = httpx.post(api.url + "/v1/search", json={"query": "coffee", "sources": ["git-branches.md"],
                                                     "score_threshold": -1}).json()
    assert {s["source"] for s in only["sources"]} == {"git-branches.md"}


def test_upload_is_cleaned_indexed_searchable_and_removable(api, library):
    files = [("files", ("../../escape/greenhouse.md", b"# Greenhouse\n\nTomatoes are watered at six.\n")),
             ("files", ("notes.exe", b"MZ binary"))]
    uploaded = httpx.post(api.url + "/v1/documents", files=files, timeout=120).json()

    assert uploaded["saved"] == ["greenhouse.md"]  # the path was stripped: saved inside the folder
    assert (library.docs_path / "greenhouse.md").is_file()
    assert not (library.docs_path.parent / "escape").exists()
    assert uploaded["ingest"]["counts"]["added"] == 1
    assert uploaded["rejected"][0]["name"] == "notes.exe" and "unsupported" in uploaded["rejected"][0]["reason"]
    assert not (library.docs_path / "notes.exe").exists()
    ids = [d["id"] for d in httpx.get(api.url + "/v1/documents").json()["documents"]]
    assert "greenhouse.md" in ids and "ops/backups.txt" in ids
    found = httpx.post(api.url + "/v1/search", json={"query": "when are tomatoes watered"}).json()
    assert found["sources"][0]["source"] == "greenhouse.md"

    removed = httpx.delete(api.url + "/v1/documents/greenhouse.md").json()
    assert removed["file_deleted"] and not (library.docs_path / "greenhouse.md").exists()
    assert "greenhouse.md" not in [d["id"] for d in httpx.get(api.url + "/v1/documents").json()["documents"]]


@pytest.mark.parametrize("raw_id", [
    "..%2F..%2Fetc%2Fpasswd",  # encoded slashes: decoded to ../../etc/passwd before routing
    "%2E%2E/%2E%2E/victim.md",  # encoded dots
    "%2Fetc%2Fpasswd",  # absolute
    "C:%5Cwindows%5Cwin.ini",  # a drive and backslashes
    "coffee.md%00.txt",  # NUL
    "ops//backups.txt",  # an empty segment
    "ops/%2E/backups.txt",  # (a literal "./" is removed by the client before sending)
])
def test_path_tricks_in_document_ids_are_refused(api, library, raw_id):
    victim = library.docs_path.parent / "victim.md"
    victim.write_text("not a document of the index")
    reply = httpx.request("DELETE", f"{api.url}/v1/documents/{raw_id}")
    assert reply.status_code == 400, reply.text
    assert "document id" in reply.json()["error"]["message"]
    assert victim.is_file() and (library.docs_path / "coffee.md").is_file()


def test_a_double_encoded_trick_is_only_a_name_that_is_not_there(api, library):
    reply = httpx.request("DELETE", f"{api.url}/v1/documents/%252E%252E%252Fcoffee.md")
    assert reply.status_code == 404 and (library.docs_path / "coffee.md").is_file()


def test_openapi_schema_is_served(api):
    schema = httpx.get(api.url + "/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/search", "/v1/documents", "/v1/threads"} <= set(schema["paths"])
    assert "SearchRequest" in schema["components"]["schemas"]


# ---------------------------------------------------------------- auth and limits
@pytest.fixture(scope="module")
def locked_api(library, embeddings):
    with start(library, embeddings, api_key=API_KEY, api_max_body_kb=4) as server:
        yield server


def test_with_a_key_set_requests_without_it_or_with_a_wrong_one_are_refused(locked_api):
    missing = httpx.get(locked_api.url + "/v1/models")
    wrong = httpx.get(locked_api.url + "/v1/models", headers={"Authorization": "Bearer " + API_KEY[:-1] + "X"})
    docs = httpx.get(locked_api.url + "/openapi.json")
    assert missing.status_code == wrong.status_code == docs.status_code == 401
    assert "DOCCHAT_API_KEY" in missing.json()["error"]["message"]
    assert API_KEY not in wrong.text and API_KEY[:-1] not in wrong.text  # nothing echoed back
    assert missing.headers["www-authenticate"] == "Bearer"

    with pytest.raises(openai.AuthenticationError):
        ask(openai.OpenAI(base_url=locked_api.url + "/v1", api_key="guess", max_retries=0))
    good = openai.OpenAI(base_url=locked_api.url + "/v1", api_key=API_KEY, max_retries=0)
    assert "[^1]" in ask(good).choices[0].message.content


def test_the_key_is_not_logged(library, embeddings, caplog):
    caplog.set_level("DEBUG")
    with start(library, embeddings, log_level="debug", api_key=API_KEY) as server:
        httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert '"GET /v1/models HTTP/1.1" 401' in caplog.text  # the access log, at its most verbose
    assert API_KEY not in caplog.text


def test_a_request_over_the_size_limit_is_refused(locked_api):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    big = {"query": "x" * 5000}
    declared = httpx.post(locked_api.url + "/v1/search", json=big, headers=headers)
    chunked = httpx.post(locked_api.url + "/v1/search", headers=headers,
                         content=iter([json.dumps(big).encode()[i:i + 1000] for i in range(0, 5100, 1000)]))
    for reply in (declared, chunked):
        assert reply.status_code == 413
        assert "DOCCHAT_API_MAX_BODY_KB" in reply.json()["error"]["message"]


def test_uploads_over_the_upload_limit_are_refused(library, embeddings):
    with start(library, embeddings, upload_max_mb=0.01) as server:
        reply = httpx.post(server.url + "/v1/documents", files=[("files", ("big.md", b"a" * 120_000))])
    assert reply.status_code == 413 and "DOCCHAT_UPLOAD_MAX_MB" in reply.json()["error"]["message"]


def test_serve_refuses_to_listen_beyond_loopback_without_a_key(isolated_env):
    docchat = Path(sys.executable).parent / "docchat"
    result = subprocess.run([str(docchat), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "DOCCHAT_API_KEY is not set" in result.stderr and "Traceback" not in result.stderr


def test_cors_is_off_unless_origins_are_configured(api, library, embeddings):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(api.url + "/v1/search", headers=preflight).headers
    with start(library, embeddings, api_cors_origins="http://localhost:3000") as server:
        allowed = httpx.options(server.url + "/v1/search", headers={**preflight, "Origin": "http://localhost:3000"})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"


# ---------------------------------------------------------------- the real thing
@pytest.mark.slow
def test_docchat_serve_answers_the_openai_client_with_the_packaged_model(library, tmp_path):
    port = free_port()
    env = {**os.environ, "DOCCHAT_DATA_DIR": str(library.data_path), "DOCCHAT_API_KEY": API_KEY,
           "DOCCHAT_MODEL_CACHE_DIR": str(library.model_cache_path), "DOCCHAT_MAX_NEW_TOKENS": "48",
           "DOCCHAT_TEMPERATURE": "0", "DOCCHAT_LOG_LEVEL": "INFO", "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(Path(sys.executable).parent / "docchat"), "serve", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_answering(url + "/v1/models", process_gone(process), deadline_s=240), log_path.read_text()
        client = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=240)
        completion = ask(client)
        chunks = list(ask(client, stream=True))
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert completion.choices[0].message.content.strip()
    assert completion.docchat["sources"][0]["source"] == "coffee.md"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() and chunks[-1].docchat["sources"][0]["source"] == "coffee.md"
    served = log_path.read_text()
    assert "POST /v1/chat/completions" in served and API_KEY not in served  # access log on, key never in it
