"""Models served by an Ollama server (``OLLAMA_HOST``): ChatOllama and OllamaEmbeddings.

Nothing is contacted when the objects are built; the first question is. ``check`` and
``explain_error`` turn "not running", "model not pulled" and "no tool support" into one
message that names the setting to change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.backends.contract import Capabilities, ChatBackend, Check, EmbeddingBackend, Options
from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

log = logging.getLogger(__name__)

# Doctor and capability probes must not hang on a host that drops packets.
PROBE_TIMEOUT_S = 5.0


class Chat(ChatBackend):
    """ChatOllama for DOCCHAT_LLM_MODEL on OLLAMA_HOST; streams token by token."""

    provider = "ollama"
    FIELDS = ("llm_model_name", "ollama_host", "temperature", "max_new_tokens", "context_window",
              "request_timeout_s")  # fmt: skip

    def model_params(self) -> dict:
        """What ChatOllama is built with (nothing is contacted until the first question)."""
        return {
            "model": self.settings.llm_model_name,
            "base_url": self.settings.ollama_host,
            "temperature": self.settings.temperature,
            "num_predict": self.settings.max_new_tokens,
            "num_ctx": self.settings.context_window,
            "client_kwargs": {"timeout": self.settings.request_timeout_s},
        }

    def _build(self) -> "BaseChatModel":
        from langchain_ollama import ChatOllama

        return ChatOllama(**self.model_params())

    def with_options(self, options: Options) -> "Runnable":
        return self.model.model_copy(update={"temperature": options.temperature, "num_predict": options.max_tokens})

    def _capabilities(self) -> Capabilities:
        return Capabilities(tools=supports_tools(self.settings), streaming=True,
                            context_window=self.settings.context_window)

    def explain_error(self, exc: BaseException) -> BackendError:
        return explain_error(self.settings, exc, self.settings.llm_model_name)

    def check(self) -> list[Check]:
        return model_checks(self.settings, "LLM model", self.settings.llm_model_name)


class Embedding(EmbeddingBackend):
    """OllamaEmbeddings for DOCCHAT_EMBEDDING_MODEL on OLLAMA_HOST."""

    provider = "ollama"
    FIELDS = ("embedding_model_name", "ollama_host", "request_timeout_s")

    def model_params(self) -> dict:
        """What OllamaEmbeddings is built with."""
        return {
            "model": self.settings.embedding_model_name,
            "base_url": self.settings.ollama_host,
            "client_kwargs": {"timeout": self.settings.request_timeout_s},
        }

    def _build(self) -> "Embeddings":
        from langchain_ollama import OllamaEmbeddings

        return OllamaEmbeddings(**self.model_params())

    def explain_error(self, exc: BaseException) -> BackendError:
        return explain_error(self.settings, exc, self.settings.embedding_model_name)

    def check(self) -> list[Check]:
        """The server has the model pulled; then it embeds one sentence."""
        checks = model_checks(self.settings, "Embedding model", self.settings.embedding_model_name)
        return checks + super().check() if all(c.ok for c in checks) else checks


def _client(settings):
    from ollama import Client

    return Client(host=settings.ollama_host, timeout=min(PROBE_TIMEOUT_S, settings.request_timeout_s))


def _has_model(names: list[str], wanted: str) -> bool:
    """Ollama names carry a tag; `llama3.2` means `llama3.2:latest`."""
    return wanted in names or (":" not in wanted and f"{wanted}:latest" in names)


def supports_tools(settings) -> bool:
    """Whether the server says the model can call tools (`/api/show` capabilities); asked once
    per backend, when the engine first needs to know."""
    try:
        capabilities = _client(settings).show(settings.llm_model_name).capabilities or []
    except Exception as exc:  # unreachable or unknown model: the first question will explain
        log.info("Could not ask Ollama for the capabilities of %s: %s", settings.llm_model_name, exc)
        return False
    return "tools" in capabilities


def model_checks(settings, label: str, model: str) -> list[Check]:
    """Doctor lines: the server answers, and has ``model`` pulled."""
    host = settings.ollama_host
    try:
        names = [m.model or "" for m in _client(settings).list().models]
    except Exception as exc:
        error = explain_error(settings, exc, model)
        return [Check("Ollama server", False, error.message, error.fix)]
    checks = [Check("Ollama server", True, f"{host} answers ({len(names)} models pulled)")]
    if _has_model(names, model):
        return [*checks, Check(label, True, f"{model} is pulled on {host}")]
    return [*checks, Check(label, False, f"{model} is not on the Ollama server at {host} "
                           f"(it has: {', '.join(names) or 'no models'}).", _pull_fix(model))]


def _pull_fix(model: str) -> str:
    return (f"Run `ollama pull {model}`, or set DOCCHAT_LLM_MODEL / DOCCHAT_EMBEDDING_MODEL to a "
            "model the server has, or OLLAMA_HOST to the server that has it.")


def explain_error(settings, exc: BaseException, model: str) -> BackendError:
    """One clear error for a failure talking to Ollama about ``model``, naming the setting to change."""
    import httpx
    from ollama import ResponseError

    host = settings.ollama_host
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, (ConnectionError, httpx.ConnectError)) or (
        isinstance(exc, ValueError) and "Failed to connect to Ollama" in str(exc)
    ):
        return BackendError(
            f"Cannot reach the Ollama server at {host} (OLLAMA_HOST).",
            fix="Start it with `ollama serve`, or set OLLAMA_HOST to where it runs, "
            "or switch backend with DOCCHAT_LLM_BACKEND=huggingface.",
        )
    if isinstance(exc, httpx.TimeoutException):
        return BackendError(
            f"The Ollama server at {host} did not answer within {settings.request_timeout_s:g} s.",
            fix="Raise DOCCHAT_REQUEST_TIMEOUT_S, or use a smaller model (DOCCHAT_LLM_MODEL).",
        )
    if isinstance(exc, ResponseError):
        text = str(exc.error)
        if exc.status_code == 404 or "not found" in text:
            return BackendError(f"The Ollama server at {host} has no model {model!r}: {text}.",
                                fix=_pull_fix(model))
        if "does not support tools" in text:
            return BackendError(
                f"The Ollama model {model!r} cannot call tools: {text}.",
                fix="Set DOCCHAT_TOOLS=off (or auto), or pick a model with tool support.",
            )
        return BackendError(f"The Ollama server at {host} answered with an error: {text} "
                            f"(status {exc.status_code}).",
                            fix="Check the Ollama server log; DOCCHAT_LLM_MODEL names the model.")
    return BackendError(f"Ollama request failed: {type(exc).__name__}: {exc}",
                        fix="Check OLLAMA_HOST and DOCCHAT_LLM_MODEL.")
