"""Backend registry: one module per provider, each defining the same two classes.

    Chat(settings)      -> ChatBackend       (app.backends.contract)
    Embedding(settings) -> EmbeddingBackend

``chat_backend(settings)`` and ``embedding_backend(settings)`` pick the provider the settings
name (DOCCHAT_LLM_BACKEND, DOCCHAT_EMBEDDING_BACKEND). Modules are imported only when used,
so torch, transformers and the provider clients stay out of `docchat --help` and out of
processes that never touch them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from app.backends.contract import Capabilities, ChatBackend, Check, EmbeddingBackend, Options
from app.errors import BackendError

if TYPE_CHECKING:
    from app.config import Settings

__all__ = [
    "BACKENDS", "Capabilities", "ChatBackend", "Check", "EmbeddingBackend", "Options",
    "backend_module", "chat_backend", "check", "embedding_backend",
]  # fmt: skip

BACKENDS = {
    "huggingface": "app.backends.huggingface",
    "ollama": "app.backends.ollama",
    "openai": "app.backends.openai",
}


def backend_module(name: str) -> ModuleType:
    """The module for a backend name, or an error that lists the available ones."""
    if name not in BACKENDS:
        raise BackendError(
            f"Unknown backend {name!r}. Available: {', '.join(BACKENDS)}.",
            fix="Set DOCCHAT_LLM_BACKEND / DOCCHAT_EMBEDDING_BACKEND to one of those.",
        )
    return importlib.import_module(BACKENDS[name])


def chat_class(settings: "Settings") -> type[ChatBackend]:
    return backend_module(settings.llm_backend).Chat


def embedding_class(settings: "Settings") -> type[EmbeddingBackend]:
    return backend_module(settings.embedding_backend).Embedding


def chat_backend(settings: "Settings", *, model=None) -> ChatBackend:
    """The chat backend the settings name (``model``: an already built LangChain chat model)."""
    return chat_class(settings)(settings, model=model)


def embedding_backend(settings: "Settings", *, model=None) -> EmbeddingBackend:
    """The embedding backend the settings name (``model``: already built LangChain embeddings)."""
    return embedding_class(settings)(settings, model=model)


def check(settings: "Settings") -> list[Check]:
    """Doctor lines of both backends (a server both use is checked once)."""
    return list(dict.fromkeys(chat_backend(settings).check() + embedding_backend(settings).check()))
