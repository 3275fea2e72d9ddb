"""Shared test set-up.

Every test runs in its own working directory with its own data folder, with no DOCCHAT_*
variable leaking in from the developer's shell, with the hub switched off (models come from
packages), and with sockets limited to loopback: a test that reaches the network fails.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

PROVIDER_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST")


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:  # AF_UNIX path
        return True
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _guarded(real):
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise ConnectionRefusedError(f"tests may only reach loopback, not {address!r}")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex


@pytest.fixture(scope="session")
def model_cache_dir(request):
    """One converted-model cache shared by the session, kept in .pytest_cache between runs.

    A fresh clone (CI) starts with it empty, so the real GGUF conversion runs there once;
    a developer's later runs skip those ~30 s.
    """
    return request.config.cache.mkdir("docchat-models")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch, model_cache_dir):
    for name in list(os.environ):
        if name.startswith("DOCCHAT_") or name in PROVIDER_VARS:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("DOCCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DOCCHAT_MODEL_CACHE_DIR", str(model_cache_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings(isolated_env):
    """Default settings for a test, with its own data folder."""
    from app.config import load_settings

    return load_settings(env_file=None)


@pytest.fixture(scope="session")
def embeddings():
    """The packaged embedding model's backend (huggingface), loaded once per session."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.backends.huggingface import Embedding
    from app.config import Settings

    backend = Embedding(Settings(_env_file=None))
    backend.prepare()
    return backend


@pytest.fixture(scope="session")
def chat(model_cache_dir):
    """The packaged SmolLM2 chat model's backend (huggingface, greedy), loaded once per session."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from app.backends.huggingface import Chat
    from app.config import Settings

    backend = Chat(Settings(_env_file=None, model_cache_dir=model_cache_dir, temperature=0.0))
    backend.prepare()
    return backend


@pytest.fixture(scope="session")
def chat_model(chat):
    """The LangChain chat model inside ``chat``."""
    return chat.model
