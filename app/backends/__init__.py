"""Backend registry: one module per provider, each exposing the same three functions.

    make_llm(settings) -> langchain_core.language_models.BaseChatModel
    make_embeddings(settings) -> langchain_core.embeddings.Embeddings
    check(settings) -> list[Check]   # what `docchat doctor` shows for this backend

Modules are imported only when used, so torch, transformers and the provider clients stay
out of `docchat --help` and out of processes that never touch them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from app.config import Settings

BACKENDS = {
    "huggingface": "app.backends.huggingface",
    "ollama": "app.backends.ollama",
    "openai": "app.backends.openai",
}


@dataclass(frozen=True)
class Check:
    """One line of `docchat doctor`: what was checked, what was found, and the fix if it failed."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def backend_module(name: str) -> ModuleType:
    """The module for a backend name, or an error that lists the available ones."""
    if name not in BACKENDS:
        raise BackendError(
            f"Unknown backend {name!r}. Available: {', '.join(BACKENDS)}.",
            fix="Set DOCCHAT_LLM_BACKEND / DOCCHAT_EMBEDDING_BACKEND to one of those.",
        )
    return importlib.import_module(BACKENDS[name])


def make_llm(settings: "Settings") -> "BaseChatModel":
    """The chat model the settings name, ready to invoke and stream."""
    return backend_module(settings.llm_backend).make_llm(settings)


def make_embeddings(settings: "Settings") -> "Embeddings":
    """The embedding model the settings name; vectors come back L2-normalised."""
    return backend_module(settings.embedding_backend).make_embeddings(settings)
