"""The page's heavy objects, built once per process and shared by every browser session.

Each cached function takes, as arguments, every value its object depends on (a key made
of the settings fields it reads, plus the index generation for the store and engine), so
an object is rebuilt exactly when one of those changes and never on a plain rerun. The
settings object itself is passed as ``_settings``: Streamlit does not hash arguments whose
name starts with an underscore, the key stands for it.
"""

from __future__ import annotations

import hashlib
import json

import streamlit as st

from app.config import Settings

# The settings each model depends on. Everything else (paths, retrieval knobs) leaves the
# loaded model as it is.
EMBEDDING_FIELDS = (
    "embedding_backend", "embedding_model", "device", "model_cache_dir",
    "ollama_host", "openai_base_url", "openai_api_key", "request_timeout_s",
)  # fmt: skip
LLM_FIELDS = (
    "llm_backend", "llm_model", "device", "model_cache_dir", "temperature", "max_new_tokens",
    "context_window", "ollama_host", "openai_base_url", "openai_api_key", "request_timeout_s",
)  # fmt: skip


def settings_key(settings: Settings, fields: tuple[str, ...] | None = None) -> str:
    """A digest of the named settings (all of them by default), secrets included but unreadable."""
    values = {}
    for name in fields or tuple(Settings.model_fields):
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        values[name] = str(value)
    values["data_path"] = str(settings.data_path)  # relative paths depend on the working folder
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def index_generation(settings: Settings) -> str:
    """The live index generation's name, or "" when there is no index yet (cheap: one small file)."""
    from vectorstore import layout

    current = layout.current_generation(settings.index_path)
    return current.name if current else ""


def embeddings(settings: Settings):
    """The embedding model (also used by uploads' ingest)."""
    return _embeddings(settings_key(settings, EMBEDDING_FIELDS), settings)


def docs_watch(settings: Settings):
    """The documents folder kept in sync while the page runs (DOCCHAT_WATCH_DOCS), or None."""
    if not settings.watch_docs:
        return None
    return _docs_watch(settings_key(settings), settings, embeddings(settings))


@st.cache_resource(max_entries=1)
def _docs_watch(key: str, _settings: Settings, _embeddings):
    from ingest.watch import page_watch

    return page_watch(_settings, _embeddings)


def llm(settings: Settings):
    """The chat model."""
    return _llm(settings_key(settings, LLM_FIELDS), settings)


def advice(settings: Settings):
    """Which model answers and how to get better answers (the Ollama probe runs once per process)."""
    return _advice(settings_key(settings, LLM_FIELDS), settings)


@st.cache_resource(max_entries=2)
def _advice(key: str, _settings: Settings):
    from app.backends.advice import model_advice

    return model_advice(_settings)


def threads(settings: Settings):
    """The conversation threads, available even before there is an index."""
    return _threads(str(settings.threads_db_path))


def store(settings: Settings):
    """The live index (raises ``StoreError`` when there is none yet)."""
    return _store(settings_key(settings), index_generation(settings), settings)


def engine(settings: Settings):
    """The chat engine over the live index, the cached models and the cached store."""
    return _engine(settings_key(settings), index_generation(settings), settings)


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=2)
def _embeddings(key: str, _settings: Settings):
    from app.backends import make_embeddings

    return make_embeddings(_settings)


@st.cache_resource(show_spinner="Loading the chat model…", max_entries=2)
def _llm(key: str, _settings: Settings):
    from app.backends import make_llm

    return make_llm(_settings)


@st.cache_resource(max_entries=4)
def _threads(path: str):
    from app.engine.threads import ThreadStore

    return ThreadStore(path)


@st.cache_resource(show_spinner="Opening the index…", max_entries=2)
def _store(key: str, generation: str, _settings: Settings):
    from vectorstore import Store

    return Store.open(_settings)


@st.cache_resource(show_spinner="Starting the chat engine…", max_entries=2)
def _engine(key: str, generation: str, _settings: Settings):
    from app.engine import Engine

    return Engine(_settings, llm=llm(_settings), embeddings=embeddings(_settings), store=store(_settings))

