"""The page's heavy objects, built once per process and shared by every browser session.

Each cached function takes, as arguments, every value its object depends on, so an object is
rebuilt exactly when one of those changes and never on a plain rerun: a backend's key is the
digest of the settings it declares it reads (and it cannot read others, app.backends.contract);
the store and the engine depend on every setting and on the index generation. The
settings object itself is passed as ``_settings``: Streamlit does not hash arguments whose
name starts with an underscore, the key stands for it.
"""

from __future__ import annotations

import hashlib
import json

import streamlit as st

from app.config import Settings

def settings_key(settings: Settings) -> str:
    """A digest of every setting, secrets included but unreadable."""
    values = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        values[name] = str(value)
    values["data_path"] = str(settings.data_path)  # relative paths depend on the working folder
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def index_generation(settings: Settings) -> str:
    """The live index generation's name, or "" when there is no index yet (cheap: one small file)."""
    from vectorstore.backend import live_version

    return live_version(settings)


def embedder(settings: Settings):
    """The embedding backend (also used by uploads' ingest), rebuilt when a setting it reads changes."""
    from app.backends import embedding_class

    return _embedder(embedding_class(settings).key_for(settings), settings)


def docs_watch(settings: Settings):
    """The documents folder kept in sync while the page runs (DOCCHAT_WATCH_DOCS), or None."""
    if not settings.watch_docs:
        return None
    from app.backends import embedding_class

    # Keyed on the folder and the embedding model only: switching the chat model must not start a second watch.
    key = f"{settings.docs_path}|{embedding_class(settings).key_for(settings)}"
    return _docs_watch(key, settings, embedder(settings))


@st.cache_resource(max_entries=1)
def _docs_watch(key: str, _settings: Settings, _embedder):
    from ingest.watch import page_watch

    return page_watch(_settings, _embedder)


def chat(settings: Settings):
    """The chat backend, rebuilt when a setting it reads changes."""
    from app.backends import chat_class

    return _chat(chat_class(settings).key_for(settings), settings)


def advice(settings: Settings):
    """Which model answers and how to get better answers (the Ollama probe runs once per process)."""
    from app.backends import chat_class

    return _advice(chat_class(settings).key_for(settings), settings)


@st.cache_resource(max_entries=2)
def _advice(key: str, _settings: Settings):
    from app.backends.advice import model_advice

    return model_advice(_settings)


def threads(settings: Settings):
    """The conversation threads, available even before there is an index."""
    return _threads(settings.database_dsn or str(settings.threads_db_path), settings)


def store(settings: Settings):
    """The live index (raises ``StoreError`` when there is none yet)."""
    return _store(settings_key(settings), index_generation(settings), settings)


def engine(settings: Settings):
    """The chat engine over the live index, the cached models and the cached store."""
    return _engine(settings_key(settings), index_generation(settings), settings)


@st.cache_resource(show_spinner="Loading the embedding model…", max_entries=2)
def _embedder(key: str, _settings: Settings):
    from app.backends import embedding_backend

    backend = embedding_backend(_settings)
    backend.prepare()
    return backend


@st.cache_resource(show_spinner="Loading the chat model…", max_entries=2)
def _chat(key: str, _settings: Settings):
    from app.backends import chat_backend

    backend = chat_backend(_settings)
    backend.prepare()
    return backend


@st.cache_resource(max_entries=4)
def _threads(where: str, _settings: Settings):
    from app.engine.threads_pg import open_threads

    return open_threads(_settings)


@st.cache_resource(show_spinner="Opening the index…", max_entries=2)
def _store(key: str, generation: str, _settings: Settings):
    from vectorstore.backend import open_store

    opened = open_store(_settings)
    opened.warm()  # the page asks many questions: read ahead what they will need
    return opened


@st.cache_resource(show_spinner="Starting the chat engine…", max_entries=2)
def _engine(key: str, generation: str, _settings: Settings):
    from app.engine import Engine

    return Engine(_settings, chat=chat(_settings), embedder=embedder(_settings), store=store(_settings))

