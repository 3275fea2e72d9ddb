"""OpenAI, or any OpenAI-compatible server (``OPENAI_BASE_URL``): ChatOpenAI and OpenAIEmbeddings.

``OPENAI_API_KEY`` is a ``SecretStr`` from the settings and is handed to the client as one;
it is never logged or printed. A local compatible server (``transformers serve``, vLLM,
llama.cpp, LM Studio) usually needs no key: with ``OPENAI_BASE_URL`` set and no key, a
placeholder is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.backends.contract import Capabilities, ChatBackend, Check, EmbeddingBackend, Options
from app.errors import BackendError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable
    from pydantic import SecretStr

OPENAI_URL = "https://api.openai.com/v1"
PROBE_TIMEOUT_S = 5.0
# Local OpenAI-compatible servers ignore the key but the client refuses to start without one.
PLACEHOLDER_KEY = "not-needed"


def base_url(settings) -> str:
    return (settings.openai_base_url or OPENAI_URL).rstrip("/")


def api_key(settings) -> "SecretStr":
    """The key to send; BackendError when api.openai.com would be called without one."""
    from pydantic import SecretStr

    if settings.openai_api_key is not None and settings.openai_api_key.get_secret_value():
        return settings.openai_api_key
    if settings.openai_base_url:
        return SecretStr(PLACEHOLDER_KEY)
    raise BackendError(
        "The openai backend needs an API key and OPENAI_API_KEY is not set.",
        fix="Set OPENAI_API_KEY in .env, or set OPENAI_BASE_URL to an OpenAI-compatible server "
        "(e.g. `transformers serve`), or use DOCCHAT_LLM_BACKEND=huggingface.",
    )


class Chat(ChatBackend):
    """ChatOpenAI for DOCCHAT_LLM_MODEL; streams token by token."""

    provider = "openai"
    FIELDS = ("llm_model_name", "openai_api_key", "openai_base_url", "temperature", "max_new_tokens",
              "context_window", "request_timeout_s")  # fmt: skip

    def model_params(self) -> dict:
        """What ChatOpenAI is built with (BackendError when api.openai.com would get no key)."""
        return {
            "model": self.settings.llm_model_name,
            "api_key": api_key(self.settings),
            "base_url": base_url(self.settings),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_new_tokens,
            "timeout": self.settings.request_timeout_s,
            "max_retries": 1,  # a wrong URL or key should fail in seconds, not after a retry storm
            "streaming": True,
        }

    def _build(self) -> "BaseChatModel":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(**self.model_params())

    def with_options(self, options: Options) -> "Runnable":
        return self.model.model_copy(update={"temperature": options.temperature, "max_tokens": options.max_tokens})

    def _capabilities(self) -> Capabilities:
        """OpenAI's chat models call tools. A compatible server may serve a model that cannot (a
        small local model would answer without ever searching), so there tools need DOCCHAT_TOOLS=on.
        The window is DOCCHAT_CONTEXT_WINDOW: the API does not say."""
        return Capabilities(tools=self.settings.openai_base_url is None, streaming=True,
                            context_window=self.settings.context_window)

    def explain_error(self, exc: BaseException) -> BackendError:
        return explain_error(self.settings, exc, self.settings.llm_model_name)

    def check(self) -> list[Check]:
        return server_checks(self.settings)


class Embedding(EmbeddingBackend):
    """OpenAIEmbeddings for DOCCHAT_EMBEDDING_MODEL."""

    provider = "openai"
    FIELDS = ("embedding_model_name", "openai_api_key", "openai_base_url", "request_timeout_s")

    def model_params(self) -> dict:
        """What OpenAIEmbeddings is built with."""
        compatible = self.settings.openai_base_url is not None
        return {
            "model": self.settings.embedding_model_name,
            "api_key": api_key(self.settings),
            "base_url": base_url(self.settings),
            "timeout": self.settings.request_timeout_s,
            "max_retries": 1,
            # Splitting by tiktoken token counts is OpenAI-specific (and downloads its tables);
            # compatible servers get the text as it is.
            "check_embedding_ctx_length": not compatible,
            "tiktoken_enabled": not compatible,
        }

    def _build(self) -> "Embeddings":
        from langchain_openai import OpenAIEmbeddings

        return OpenAIEmbeddings(**self.model_params())

    def explain_error(self, exc: BaseException) -> BackendError:
        return explain_error(self.settings, exc, self.settings.embedding_model_name)


def server_checks(settings) -> list[Check]:
    """Doctor lines: a key is set and the base URL answers `/models` with it."""
    try:
        key = api_key(settings)
    except BackendError as exc:
        return [Check("OpenAI key", False, exc.message, exc.fix)]
    source = "OPENAI_API_KEY is set" if key.get_secret_value() != PLACEHOLDER_KEY else "no key (local server)"
    checks = [Check("OpenAI key", True, source)]
    try:
        models = _list_models(settings, key)
    except Exception as exc:
        error = explain_error(settings, exc, settings.llm_model_name)
        return [*checks, Check("OpenAI server", False, error.message, error.fix)]
    checks.append(Check("OpenAI server", True, f"{base_url(settings)} answers ({len(models)} models listed)"))
    return checks


def _list_models(settings, key: "SecretStr") -> list[str]:
    from openai import OpenAI

    client = OpenAI(api_key=key.get_secret_value(), base_url=base_url(settings),
                    timeout=min(PROBE_TIMEOUT_S, settings.request_timeout_s), max_retries=0)
    return [m.id for m in client.models.list()]


def explain_error(settings, exc: BaseException, model: str) -> BackendError:
    """One clear error for a failure talking to an OpenAI-compatible server about ``model``,
    naming the setting to change."""
    import openai

    url = base_url(settings)
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(f"{url} did not answer within {settings.request_timeout_s:g} s.",
                            fix="Raise DOCCHAT_REQUEST_TIMEOUT_S, or check OPENAI_BASE_URL.")
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(
            f"Cannot reach the OpenAI-compatible server at {url} (OPENAI_BASE_URL).",
            fix="Start the server, or set OPENAI_BASE_URL to where it runs (unset it for api.openai.com).",
        )
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return BackendError(f"{url} refused the API key (status {exc.status_code}).",
                            fix="Set OPENAI_API_KEY to a valid key for this server.")
    if isinstance(exc, openai.NotFoundError) or (
        isinstance(exc, openai.BadRequestError) and (model in str(exc) or "model" in str(exc).lower())
    ):
        return BackendError(f"{url} does not serve the model {model!r}: {_detail(exc)}",
                            fix="Set DOCCHAT_LLM_MODEL (or DOCCHAT_EMBEDDING_MODEL) to a model "
                            "this server lists at /v1/models.")
    if isinstance(exc, openai.RateLimitError):
        return BackendError(f"{url} is rate-limiting requests: {_detail(exc)}",
                            fix="Wait and retry, or check the account's quota.")
    if isinstance(exc, openai.APIStatusError):
        return BackendError(f"{url} answered with status {exc.status_code}: {_detail(exc)}",
                            fix="Check OPENAI_BASE_URL and DOCCHAT_LLM_MODEL.")
    return BackendError(f"OpenAI request failed: {type(exc).__name__}: {exc}",
                        fix="Check OPENAI_BASE_URL, OPENAI_API_KEY and DOCCHAT_LLM_MODEL.")


def _detail(exc: BaseException) -> str:
    """The server's own words, without echoing request headers (the key) back."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(getattr(exc, "message", exc))[:300]
