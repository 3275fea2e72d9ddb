"""`docchat mcp`: the official `mcp` SDK client calls every tool and reads the document
resources, over stdio (a server process) and over streamable HTTP (uvicorn on loopback).

The fast tests answer `ask` with the scripted chat model (tests/service.py); the slow one
starts the real `docchat mcp` with the packaged SmolLM2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from app.config import with_overrides
from tests.service import LoopbackServer, library, scripted  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
API_KEY = "mcp-test-key-7f3a"
TOOLS = {"search_documents", "read_document", "list_documents", "ask"}


def payload(result):
    """A tool's structured result (lists come wrapped as {"result": [...]})."""
    assert not result.is_error, result.content
    data = result.structured_content
    return data["result"] if isinstance(data, dict) and set(data) == {"result"} else data


def text_of(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def exercise(client) -> dict:
    """Every tool and the resources, as an MCP client uses them; returns what came back."""
    seen = {"tools": {tool.name for tool in (await client.list_tools()).tools}}
    seen["search"] = payload(await client.call_tool("search_documents", {"query": "database backup retention", "k": 2}))
    seen["list"] = payload(await client.call_tool("list_documents", {}))
    seen["read"] = payload(await client.call_tool("read_document", {"source": "git-branches.md", "section": "undoing"}))
    seen["read_missing"] = await client.call_tool("read_document", {"source": "nope.md"})
    seen["ask"] = payload(await client.call_tool("ask", {"question": "How often is the coffee machine descaled?"}))
    seen["resources"] = [str(r.uri) for r in (await client.list_resources()).resources]
    seen["resource"] = (await client.read_resource("docchat://documents/ops/backups.txt")).contents[0].text
    return seen


def check(seen: dict, *, scripted: bool = True) -> None:
    assert seen["tools"] == TOOLS
    assert len(seen["search"]) == 2 and seen["search"][0]["source"].startswith("ops/")
    assert "35 days" in " ".join(hit["text"] for hit in seen["search"])
    assert {"coffee.md", "ops/backups.txt"} <= {d["source"] for d in seen["list"]}
    assert "git branch -d feature" in seen["read"] and "git switch" not in seen["read"]  # only that section
    assert seen["read_missing"].is_error and "list_documents" in text_of(seen["read_missing"])
    assert seen["ask"]["sources"][0]["source"] == "coffee.md"
    if scripted:
        assert "descaled every 6 weeks [^1]" in seen["ask"]["answer"]
        assert "[^1]: coffee.md" in seen["ask"]["answer"]
    assert "docchat://documents/ops/backups.txt" in seen["resources"]
    assert "kept for 35 days" in seen["resource"]


def stdio_params(command: list[str], settings) -> StdioServerParameters:
    env = {**os.environ, "DOCCHAT_DATA_DIR": str(settings.data_path),
           "DOCCHAT_MODEL_CACHE_DIR": str(settings.model_cache_path), "DOCCHAT_MAX_NEW_TOKENS": "48",
           "DOCCHAT_TEMPERATURE": "0", "HF_HUB_OFFLINE": "1"}
    return StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(REPO_ROOT))


async def over_stdio(params) -> dict:
    async with Client(params, read_timeout_seconds=240) as client:
        return await exercise(client)


def test_every_tool_over_stdio(library):
    # A real server process speaking MCP on its stdin/stdout (scripted model, real index).
    check(asyncio.run(over_stdio(stdio_params([sys.executable, "-m", "tests.service"], library))))


def http_server(settings, embeddings) -> LoopbackServer:
    from app.engine import Engine
    from app.mcp.cli import MCP_PATH, http_app
    from app.mcp.server import build_server

    server = build_server(Engine(settings, chat=scripted(settings), embedder=embeddings))
    return LoopbackServer(http_app(server, settings, "127.0.0.1"), ready_path=MCP_PATH)


async def over_http(url: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await exercise(client)


def test_every_tool_over_streamable_http(library, embeddings):
    with http_server(library, embeddings) as server:
        check(asyncio.run(over_http(server.url + "/mcp")))


def test_over_http_the_api_key_is_required_when_set(library, embeddings):
    locked = with_overrides(library, api_key=API_KEY)
    with http_server(locked, embeddings) as server:
        refused = httpx2.post(server.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        wrong = httpx2.post(server.url + "/mcp", headers={"Authorization": "Bearer nope"}, json={})
        check(asyncio.run(over_http(server.url + "/mcp", key=API_KEY)))
    assert refused.status_code == wrong.status_code == 401


@pytest.mark.parametrize("uri", [
    "docchat://documents/..%2F..%2Fetc%2Fpasswd",
    "docchat://documents/%2Fetc%2Fpasswd",
    "docchat://documents/coffee.md%00",
    "docchat://documents/nope.md",
])
def test_resource_path_tricks_and_unknown_documents_are_errors(library, embeddings, uri):
    from mcp.shared.exceptions import MCPError

    from app.engine import Engine
    from app.mcp.server import build_server

    async def read():
        async with Client(build_server(Engine(library, chat=scripted(library), embedder=embeddings))) as client:
            try:
                return await client.read_resource(uri)
            except MCPError as error:
                return error

    error = asyncio.run(read())
    assert isinstance(error, MCPError)


def test_mcp_http_refuses_to_listen_beyond_loopback_without_a_key(isolated_env):
    import subprocess

    docchat = Path(sys.executable).parent / "docchat"
    result = subprocess.run([str(docchat), "mcp", "--http", "--host", "0.0.0.0"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "DOCCHAT_API_KEY is not set" in result.stderr


@pytest.mark.slow
def test_real_docchat_mcp_over_stdio_with_the_packaged_model(library):
    docchat = str(Path(sys.executable).parent / "docchat")
    seen = asyncio.run(over_stdio(stdio_params([docchat, "mcp"], library)))
    check(seen, scripted=False)
    assert seen["ask"]["answer"].strip()
