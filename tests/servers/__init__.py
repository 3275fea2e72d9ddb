"""Real HTTP servers on loopback for the backend tests.

* ``OllamaStandIn`` -- a STAND-IN for the Ollama server binary, which cannot be installed on
  this machine (no registry ships it). It is a real stdlib HTTP server on 127.0.0.1 that speaks
  the part of Ollama's HTTP API the ``ollama`` client and ``ChatOllama`` use (``/api/chat``
  streaming NDJSON and not, ``/api/tags``, ``/api/show`` with ``capabilities``, ``/api/embed``,
  ``/api/version``), answering with the same packaged SmolLM2 model the embedded backend
  runs, so answers are real. Shapes follow the installed ``ollama`` client's ``_types.py``.
* ``TransformersServe`` -- the real ``transformers serve`` (OpenAI-compatible) on loopback,
  serving the converted SmolLM2 safetensors folder.

Use the session fixtures from a test module::

    from tests.servers import ollama_server, openai_server  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

OLLAMA_CHAT_MODEL = "smollm2:135m"
OLLAMA_EMBED_MODEL = "all-minilm:l6-v2"
# Ollama's documented default for num_predict is unlimited; a short default keeps tests quick.
DEFAULT_NUM_PREDICT = 64


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, deadline_s: float) -> bool:
    """Poll ``url`` until it answers 200 (True), or until ``process`` exits or the deadline
    passes (False). Waiting on the process paces the loop: no sleeps."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            process.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        return False  # the server exited
    return False


def closed_port_url() -> str:
    """A loopback URL that refuses connections: the 'server is not running' case."""
    return f"http://127.0.0.1:{free_port()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# ---------------------------------------------------------------- the model behind the stand-in


class LocalChat:
    """Streams chat replies from a transformers model, one request at a time."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._lock = threading.Lock()  # one model, one generation at a time, like a small Ollama

    def stream(self, messages: list[dict], options: dict, counts: dict) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        chat = [{"role": m.get("role", "user"), "content": m.get("content") or ""} for m in messages]
        inputs = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        counts["prompt_eval_count"] = int(inputs["input_ids"].shape[-1])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        temperature = float(options.get("temperature", 0.8))
        kwargs = dict(
            **inputs,
            streamer=streamer,
            max_new_tokens=int(options.get("num_predict") or DEFAULT_NUM_PREDICT),
            do_sample=temperature > 0,
            **({"temperature": temperature} if temperature > 0 else {}),
        )
        if options.get("stop"):
            kwargs.update(stop_strings=list(options["stop"]), tokenizer=self.tokenizer)
        with self._lock:
            worker = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
            worker.start()
            for piece in streamer:
                counts["eval_count"] = counts.get("eval_count", 0) + 1
                if piece:
                    yield piece
            worker.join()


@dataclass
class ServedModel:
    """One entry of `/api/tags`: a chat model, an embedding model, or a name only."""

    name: str
    capabilities: list[str]
    chat: LocalChat | None = None
    embeddings: object | None = None  # an EmbeddingBackend (app.backends.contract)
    family: str = "llama"
    details: dict = field(default_factory=dict)

    def tag(self) -> dict:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": _now(),
            "size": 0,
            "digest": f"{abs(hash(self.name)):064x}"[:64],
            "details": {"format": "safetensors", "family": self.family, "families": [self.family],
                        "parameter_size": "135M", "quantization_level": "F32", **self.details},
        }


# ---------------------------------------------------------------- the HTTP side


class OllamaStandIn:
    """A stand-in for the Ollama server (no Ollama binary here): real HTTP on 127.0.0.1."""

    def __init__(self, models: list[ServedModel]):
        self.models = {m.name: m for m in models}
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, body): what clients sent
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _OllamaHandler)
        self._http.daemon_threads = True
        self._http.standin = self
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "OllamaStandIn":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def find(self, name: str) -> ServedModel | None:
        """Ollama accepts a name with or without its ':latest' tag."""
        return self.models.get(name) or self.models.get(f"{name}:latest")


class _OllamaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes: simple streaming

    def log_message(self, *args):  # keep pytest output clean
        pass

    @property
    def standin(self) -> OllamaStandIn:
        return self.server.standin

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.standin.requests.append((self.command, self.path, body))
        return body

    def _model_or_404(self, name: str) -> ServedModel | None:
        model = self.standin.find(name)
        if model is None:
            self._send_json(404, {"error": f"model '{name}' not found"})
        return model

    def do_GET(self):
        self.standin.requests.append(("GET", self.path, {}))
        if self.path == "/":
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [m.tag() for m in self.standin.models.values()]})
        elif self.path == "/api/version":
            self._send_json(200, {"version": "0.0.0-standin"})
        else:
            self._send_json(404, {"error": "404 page not found"})

    def do_POST(self):
        body = self._body()
        routes = {"/api/chat": self._chat, "/api/show": self._show, "/api/embed": self._embed}
        handler = routes.get(self.path)
        if handler is None:
            self._send_json(404, {"error": "404 page not found"})
        else:
            handler(body)

    def _show(self, body: dict) -> None:
        model = self._model_or_404(body.get("model") or body.get("name", ""))
        if model:
            tag = model.tag()
            self._send_json(200, {
                "modelfile": f"FROM {model.name}", "parameters": "", "template": "{{ .Prompt }}",
                "details": tag["details"], "model_info": {"general.architecture": model.family},
                "capabilities": model.capabilities, "modified_at": tag["modified_at"],
            })

    def _embed(self, body: dict) -> None:
        model = self._model_or_404(body.get("model", ""))
        if not model:
            return
        if model.embeddings is None:
            self._send_json(400, {"error": f'"{model.name}" does not support embeddings'})
            return
        texts = body.get("input", "")
        texts = [texts] if isinstance(texts, str) else list(texts)
        vectors = model.embeddings.embed(texts).tolist()
        self._send_json(200, {"model": model.name, "embeddings": vectors, "prompt_eval_count": len(texts)})

    def _chat(self, body: dict) -> None:
        model = self._model_or_404(body.get("model", ""))
        if not model:
            return
        if body.get("tools") and "tools" not in model.capabilities:
            self._send_json(400, {"error": f"registry.ollama.ai/library/{model.name} does not support tools"})
            return
        if model.chat is None:
            self._send_json(400, {"error": f'"{model.name}" does not support chat'})
            return
        started = time.perf_counter_ns()
        counts: dict = {}
        pieces = model.chat.stream(body.get("messages", []), body.get("options") or {}, counts)

        def part(content: str, done: bool) -> dict:
            out = {"model": model.name, "created_at": _now(),
                   "message": {"role": "assistant", "content": content}, "done": done}
            if done:
                total = time.perf_counter_ns() - started
                out.update(done_reason="stop", total_duration=total, load_duration=0,
                           prompt_eval_count=counts.get("prompt_eval_count", 0), prompt_eval_duration=0,
                           eval_count=counts.get("eval_count", 0), eval_duration=total)
            return out

        if not body.get("stream", True):
            self._send_json(200, part("".join(pieces), done=True))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for piece in pieces:
            self.wfile.write((json.dumps(part(piece, done=False)) + "\n").encode())
            self.wfile.flush()
        self.wfile.write((json.dumps(part("", done=True)) + "\n").encode())


class RefusingOpenAI:
    """A loopback server that answers every request with 401, as api.openai.com does for a bad key."""

    def __init__(self):
        self.authorization_seen: list[str] = []
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHandler)
        self._http.daemon_threads = True
        self._http.owner = self
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        host, port = self._http.server_address[:2]
        self.url = f"http://{host}:{port}/v1"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class _RefusingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _refuse(self):
        self.server.owner.authorization_seen.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.dumps({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _refuse


# ---------------------------------------------------------------- transformers serve


class TransformersServe:
    """The real `transformers serve` on loopback: an OpenAI-compatible server for one model folder."""

    def __init__(self, model_dir: Path, hub_cache: Path, log_path: Path):
        self.model_dir = str(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        # /v1/models needs an existing HF cache folder; the hub stays offline.
        env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
        hub_cache.mkdir(parents=True, exist_ok=True)
        cli = Path(sys.executable).parent / "transformers"  # the console script of this venv
        command = [str(cli), "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port),
                   "--device", "cpu"]
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, deadline_s: float = 180.0) -> "TransformersServe":
        """Poll /v1/models until it answers; fail early (with the log) if the server died."""
        if wait_for_http(self.url + "/models", self.process, deadline_s):
            return self
        self.stop()
        raise RuntimeError(f"transformers serve did not start; log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def converted_model_dir(model_cache_dir) -> Path:
    """The packaged SmolLM2 converted to safetensors (once per session, shared cache)."""
    from app.backends.huggingface import chat_model_source
    from app.config import Settings

    return Path(chat_model_source(Settings(_env_file=None, model_cache_dir=model_cache_dir)))


@pytest.fixture(scope="session")
def ollama_server(converted_model_dir, embeddings):
    """An Ollama stand-in on loopback serving `smollm2:135m` (chat) and `all-minilm:l6-v2` (embed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted_model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted_model_dir)
    server = OllamaStandIn([
        ServedModel(OLLAMA_CHAT_MODEL, ["completion"], chat=LocalChat(model, tokenizer)),
        ServedModel(OLLAMA_EMBED_MODEL, ["embedding"], embeddings=embeddings, family="bert"),
    ]).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_server(converted_model_dir, tmp_path_factory):
    """`transformers serve` on loopback; the model name to request is `server.model_dir`."""
    folder = tmp_path_factory.mktemp("transformers-serve")
    server = TransformersServe(converted_model_dir, folder / "hub", folder / "serve.log").wait_ready()
    yield server
    server.stop()


@pytest.fixture
def refusing_openai():
    """An OpenAI-shaped server that rejects every key with 401."""
    server = RefusingOpenAI()
    yield server
    server.stop()
