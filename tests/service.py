"""Shared parts of the service tests (HTTP API, MCP, retriever): a real index, a scripted chat
model, and a real uvicorn server on a free loopback port.

* ``library`` (module fixture): a small corpus in the documents folder, ingested by the real
  sync with the packaged embedding model into a real index.
* ``ScriptedChat``: a STAND-IN for the chat model, so that what these tests measure is the
  service around the engine, not the 135M model's wording. It streams one fixed reply word by
  word; retrieval, context, citations, threads and the servers all run for real. The slow
  tests in each module run the packaged SmolLM2 instead.
* ``LoopbackServer``: uvicorn serving an ASGI app on 127.0.0.1 in a thread of the test process.

    from tests.service import library, LoopbackServer, ScriptedChat  # noqa: F401
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.scripted import ScriptedBackend
from tests.scripted import ScriptedChat as _Scripted
from tests.servers import free_port
from tests.test_engine_e2e import CORPUS as ENGINE_CORPUS

# The engine tests' corpus, plus two more documents about backups (queries with several good chunks).
CORPUS = {
    **ENGINE_CORPUS,
    "ops/restores.md": "# Restoring a backup\n\nTo restore the database from a nightly backup, stop the "
    "application, run the restore script with the backup date, and start the application again. "
    "A restore of the full database takes about 40 minutes.\n",
    "ops/retention.md": "# Backup retention\n\nDatabase backups are deleted automatically after 35 days. "
    "Monthly backups of the database are archived for one year in cold storage.\n",
}
# Written as a model that cites would; "[1, 2]" arrives split over two streamed pieces.
SCRIPTED_REPLY = "The coffee machine must be descaled every 6 weeks [1]. Use citric acid [1, 2]."


class ScriptedChat(_Scripted):
    """A scripted stand-in for the chat model: every call streams SCRIPTED_REPLY word by word."""

    def __init__(self, reply: str = SCRIPTED_REPLY, **kw):
        super().__init__(reply, **kw)


def scripted(settings, model=None) -> ScriptedBackend:
    """The chat backend the service tests give the engine: ScriptedChat unless ``model``."""
    return ScriptedBackend(settings, model if model is not None else ScriptedChat())


@pytest.fixture(scope="module")
def library(tmp_path_factory, model_cache_dir, embeddings):
    """Settings whose documents folder holds CORPUS, ingested into a real index (once per module)."""
    from app.config import Settings
    from ingest.sync import sync

    base = tmp_path_factory.mktemp("service")
    # The scripted stand-in plays a capable model: its answers come in its own words
    # (answer_style=generate), not quoted first as the embedded 135M model's are.
    settings = Settings(_env_file=None, data_dir=base / "data", model_cache_dir=model_cache_dir,
                        temperature=0.0, max_new_tokens=48, tools="off", answer_style="generate")
    for name, text in CORPUS.items():
        path = settings.docs_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    summary = sync(settings, [settings.docs_path], embedder=embeddings)
    assert not summary.failed and len(summary.added) == len(CORPUS)
    return settings


class LoopbackServer:
    """uvicorn serving ``app`` on 127.0.0.1:free port, in a thread; ``with`` starts and stops it."""

    def __init__(self, app, ready_path: str = "/openapi.json", log_level: str = "warning"):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        # log_config=None: uvicorn's records (the access log too) reach pytest's caplog.
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level=log_level, log_config=None,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        if not wait_until_answering(self.url + self.ready_path, self._gone, deadline_s=30):
            raise RuntimeError(f"uvicorn did not start on {self.url}")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def _gone(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def wait_until_answering(url: str, gone, deadline_s: float) -> bool:
    """Poll ``url`` until the server answers at all (any HTTP status: a 401 is an answer too).

    ``gone(timeout)`` waits on the server (thread or process) and says whether it ended: it
    paces the loop, so there are no sleeps, and a server that died is not waited for."""
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if gone(0.1):
            return False
    return False


def process_gone(process):
    """``gone`` for a subprocess."""
    import subprocess

    def gone(timeout: float) -> bool:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    return gone


def write_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def serve_scripted_mcp() -> None:
    """`python -m tests.service`: the MCP server on stdio with the scripted chat model, over the
    index the environment names (DOCCHAT_DATA_DIR): a real stdio server process for the fast tests."""
    from app.config import load_settings
    from app.engine import Engine
    from app.mcp.server import build_server

    settings = load_settings(env_file=None)
    build_server(Engine(settings, chat=scripted(settings))).run("stdio")


if __name__ == "__main__":
    serve_scripted_mcp()
