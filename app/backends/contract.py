"""What the engine needs from a model provider, typed: one chat backend, one embedding backend.

Each provider module (huggingface, ollama, openai) defines a ``ChatBackend`` and an
``EmbeddingBackend`` subclass. A backend is built from the settings it declares in ``FIELDS``
and can read no other (``BackendSettings`` raises on any other name), so those fields are
exactly what the loaded model depends on and their digest, ``key``, is the cache key of the
chat page. Models load on first use and are kept; capabilities are computed once.

The engine talks to these objects only: it never looks inside a LangChain model.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from app.engine.tokens import estimate_tokens
from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

    from app.config import Settings

@dataclass(frozen=True)
class Check:
    """One line of `docchat doctor`: what was checked, what was found, and the fix if it failed."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Options:
    """Generation settings of one call: the engine answers at the user's temperature and
    rewrites follow-ups greedily with a short length, from the same loaded model."""

    temperature: float
    max_tokens: int


@dataclass(frozen=True)
class Capabilities:
    """What a chat model can do, asked once per backend (never per turn)."""

    tools: bool  # calls tools: the engine may run the agent (DOCCHAT_TOOLS=auto)
    streaming: bool  # yields tokens as they come (else the answer arrives whole)
    context_window: int  # tokens the prompt and the answer share


class BackendSettings:
    """The settings one backend was built from: reading any other is a bug, and raises.

    Values are taken when the backend is built (derived ones too, such as the model name a
    default stands for), so a backend never sees a later change of the settings object.
    """

    def __init__(self, settings: "Settings", fields: tuple[str, ...]):
        self._values = {name: getattr(settings, name) for name in fields}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(
                f"{name!r} is not among the settings this backend declares in FIELDS"
            ) from None

    @property
    def key(self) -> str:
        """A digest of the values, secrets included but unreadable."""
        shown = {}
        for name, value in self._values.items():
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            shown[name] = str(value)
        return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


class _Built(ABC):
    """Common to both roles: declared settings, a lazily built model, errors in plain words."""

    provider: ClassVar[str]
    FIELDS: ClassVar[tuple[str, ...]]

    def __init__(self, settings: "Settings", *, model=None):
        self.settings = BackendSettings(settings, self.FIELDS)
        self._model = model
        self._lock = threading.Lock()

    @classmethod
    def key_for(cls, settings: "Settings") -> str:
        """The cache key of the backend these settings build, without building it."""
        return BackendSettings(settings, cls.FIELDS).key

    @property
    def key(self) -> str:
        return self.settings.key

    def _loaded(self):
        with self._lock:  # the page's sessions share one backend: load the model once
            if self._model is None:
                self._model = self._build()
            return self._model

    @abstractmethod
    def _build(self):
        """Load or connect the LangChain model (called once, on first use)."""

    @abstractmethod
    def explain_error(self, exc: BaseException) -> BackendError:
        """One clear error for a failure of this model, naming the setting to change."""

    @abstractmethod
    def check(self) -> list[Check]:
        """Doctor lines: the model is reachable and usable (it answers, or embeds)."""


class ChatBackend(_Built):
    """A chat model with its options, token counting and capabilities."""

    @property
    def model(self) -> "BaseChatModel":
        """The LangChain chat model at the configured temperature and answer length."""
        return self._loaded()

    @abstractmethod
    def with_options(self, options: Options) -> "Runnable":
        """The same loaded model, generating with ``options`` for the calls made through it."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in this model's prompt (an estimate unless the tokenizer is local)."""
        return estimate_tokens(text)

    @cached_property
    def capabilities(self) -> Capabilities:
        return self._capabilities()

    @abstractmethod
    def _capabilities(self) -> Capabilities: ...

    @property
    def name(self) -> str:
        return self.settings.llm_model_name

    def prepare(self) -> None:
        """Load the model now (the page and the servers do this before the first question)."""
        self._loaded()


class EmbeddingBackend(_Built):
    """An embedding model: texts in, L2-normalised float32 rows out."""

    @property
    def embeddings(self) -> "Embeddings":
        """The LangChain embeddings (for LangChain callers); ``embed`` is the engine's way in."""
        return self._loaded()

    @property
    def name(self) -> str:
        return self.settings.embedding_model_name

    def embed(self, texts: list[str]) -> np.ndarray:
        """One normalised row per text; ``(0, 0)`` for no texts."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        try:
            vectors = np.asarray(self.embeddings.embed_documents(list(texts)), dtype=np.float32)
        except BackendError:
            raise
        except Exception as exc:
            raise self.explain_error(exc) from exc
        return normalised(vectors)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """The rows the index stores for ``texts``: ``embed``'s, unless the backend embeds
        stored passages another way (the huggingface backend's ``int8-documents``)."""
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        """The vector of one search query (some models embed queries differently from passages)."""
        try:
            vector = np.asarray(self.embeddings.embed_query(text), dtype=np.float32)
        except BackendError:
            raise
        except Exception as exc:
            raise self.explain_error(exc) from exc
        return normalised(vector[None, :])[0]

    def check(self) -> list[Check]:
        """Embed one sentence: its dimension is what the index stores."""
        label = f"{self.provider} · {self.name}"
        try:
            dim = len(self.embed_query("Is docchat configured correctly?"))
        except BackendError as exc:
            return [Check("Embeddings", False, f"{label}: {exc.message}", exc.fix)]
        return [Check("Embeddings", True, f"{label} · {dim} dimensions")]

    def prepare(self) -> None:
        self._loaded()


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
