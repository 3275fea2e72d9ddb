"""Settings: defaults, parsing, every error message, typo warnings, provider variables, .env;
the backend registry; `docchat --help`; and .env.example kept in step with Settings."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import backends
from app.cli import main
from app.config import REPO_ROOT, Settings, env_name, known_env_names, load_settings, with_overrides
from app.errors import BackendError, ConfigError


def test_defaults(isolated_env):
    settings = load_settings(env_file=None)
    assert settings.llm_backend == "huggingface" and settings.embedding_backend == "huggingface"
    assert settings.llm_model_name == "SmolLM2-135M-Instruct"
    assert settings.embedding_model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert (settings.k, settings.fetch_k, settings.chunk_size, settings.chunk_overlap) == (4, 20, 1000, 150)
    assert (settings.temperature, settings.max_new_tokens, settings.context_window) == (0.1, 256, 2048)
    data = isolated_env / "data"
    assert settings.data_path == data
    assert settings.index_path == data / "index"
    assert settings.docs_path == data / "documents"
    assert settings.threads_db_path == data / "threads.sqlite"
    assert settings.openai_api_key is None and settings.ollama_host == "http://localhost:11434"


@pytest.mark.parametrize("backend, model", [("ollama", "llama3.2"), ("openai", "gpt-4o-mini")])
def test_each_backend_has_a_default_model(monkeypatch, backend, model):
    monkeypatch.setenv("DOCCHAT_LLM_BACKEND", backend)
    assert load_settings(env_file=None).llm_model_name == model


def test_values_are_parsed_from_the_environment(monkeypatch, isolated_env):
    monkeypatch.setenv("DOCCHAT_K", "8")
    monkeypatch.setenv("DOCCHAT_TEMPERATURE", "0")
    monkeypatch.setenv("DOCCHAT_ALLOW_GENERAL_KNOWLEDGE", "true")
    monkeypatch.setenv("DOCCHAT_SEARCH_TYPE", "mmr")
    monkeypatch.setenv("DOCCHAT_INDEX_DIR", "elsewhere/idx")
    monkeypatch.setenv("DOCCHAT_LLM_MODEL", "HuggingFaceTB/SmolLM2-360M-Instruct")
    settings = load_settings(env_file=None)
    assert settings.k == 8 and settings.temperature == 0.0
    assert settings.allow_general_knowledge is True and settings.search_type == "mmr"
    assert settings.index_path == isolated_env / "elsewhere" / "idx"
    assert settings.llm_model_name == "HuggingFaceTB/SmolLM2-360M-Instruct"


def test_an_empty_value_means_the_default(monkeypatch, isolated_env):
    monkeypatch.setenv("DOCCHAT_INDEX_DIR", "")
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    settings = load_settings(env_file=None)
    assert settings.index_path == isolated_env / "data" / "index"  # not the current folder
    assert settings.openai_base_url is None


@pytest.mark.parametrize("name, value, expected", [
    ("DOCCHAT_LLM_BACKEND", "llamacpp", "DOCCHAT_LLM_BACKEND='llamacpp' is not valid: Input should be "
                                        "'huggingface', 'ollama' or 'openai'."),
    ("DOCCHAT_DEVICE", "tpu", "DOCCHAT_DEVICE='tpu' is not valid: Input should be 'auto', 'cpu', 'cuda' or 'mps'."),
    ("DOCCHAT_K", "many", "DOCCHAT_K='many' is not valid: Input should be a valid integer"),
    ("DOCCHAT_K", "0", "DOCCHAT_K='0' is not valid: Input should be greater than or equal to 1."),
    ("DOCCHAT_TEMPERATURE", "3", "DOCCHAT_TEMPERATURE='3' is not valid: Input should be less than or equal to 2."),
    ("DOCCHAT_MAX_FILE_MB", "-1", "DOCCHAT_MAX_FILE_MB='-1' is not valid: Input should be greater than 0."),
    ("DOCCHAT_ALLOW_GENERAL_KNOWLEDGE", "maybe", "DOCCHAT_ALLOW_GENERAL_KNOWLEDGE='maybe' is not valid: "
                                                 "Input should be a valid boolean"),
    ("DOCCHAT_CHUNK_OVERLAP", "1000", "DOCCHAT_CHUNK_OVERLAP (1000) must be smaller than DOCCHAT_CHUNK_SIZE (1000)."),
    ("DOCCHAT_FETCH_K", "2", "DOCCHAT_FETCH_K (2) must be at least DOCCHAT_K (4)."),
    ("DOCCHAT_HNSW_M", "48", "DOCCHAT_HNSW_EF_CONSTRUCTION (64) must be at least twice DOCCHAT_HNSW_M (48)."),
])
def test_an_invalid_value_names_the_variable_the_value_and_what_is_allowed(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None)
    assert expected in str(raised.value)
    assert ".env.example" in raised.value.fix


def test_every_invalid_value_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("DOCCHAT_K", "zero")
    monkeypatch.setenv("DOCCHAT_TOOLS", "sometimes")
    with pytest.raises(ConfigError) as raised:
        load_settings(env_file=None)
    assert "DOCCHAT_K='zero'" in str(raised.value) and "DOCCHAT_TOOLS='sometimes'" in str(raised.value)


def test_the_cli_prints_the_message_not_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("DOCCHAT_CHUNK_SIZE", "ten")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("docchat: Invalid configuration:")
    assert "DOCCHAT_CHUNK_SIZE='ten'" in err and "Traceback" not in err


def test_overrides_are_validated_too(settings):
    assert with_overrides(settings, k=6).k == 6
    with pytest.raises(ConfigError, match="DOCCHAT_K=0 is not valid"):
        with_overrides(settings, k=0)


def test_a_misspelt_variable_gets_a_warning_with_the_likely_name(monkeypatch, caplog):
    monkeypatch.setenv("DOCCHAT_TEMPERTURE", "0.5")
    monkeypatch.setenv("DOCCHAT_FROBNICATE", "1")
    with caplog.at_level(logging.WARNING, logger="app.config"):
        settings = load_settings(env_file=None)
    assert settings.temperature == 0.1  # ignored, not applied to something else
    messages = [r.getMessage() for r in caplog.records]
    assert "Unknown setting DOCCHAT_TEMPERTURE is ignored. Did you mean DOCCHAT_TEMPERATURE?" in messages
    assert any(m.startswith("Unknown setting DOCCHAT_FROBNICATE is ignored.") for m in messages)


def test_a_misspelt_variable_in_dotenv_is_reported_too(isolated_env, caplog):
    (isolated_env / ".env").write_text("DOCCHAT_CHUNK_SIZ=500\n")
    with caplog.at_level(logging.WARNING, logger="app.config"):
        load_settings()
    assert any("DOCCHAT_CHUNK_SIZ" in r.getMessage() and "DOCCHAT_CHUNK_SIZE" in r.getMessage()
               for r in caplog.records)


def test_provider_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:11500")
    settings = load_settings(env_file=None)
    assert settings.openai_api_key.get_secret_value() == "sk-test-123"
    assert "sk-test-123" not in repr(settings) and "sk-test-123" not in str(settings)
    assert settings.openai_base_url == "http://127.0.0.1:8000/v1"
    assert settings.ollama_host == "http://127.0.0.1:11500"


def test_prefixed_provider_variables_work_as_well(monkeypatch):
    monkeypatch.setenv("DOCCHAT_OLLAMA_HOST", "http://127.0.0.1:11600")
    assert load_settings(env_file=None).ollama_host == "http://127.0.0.1:11600"


def test_dotenv_is_read_and_the_environment_wins(isolated_env, monkeypatch):
    (isolated_env / ".env").write_text("DOCCHAT_K=7\nDOCCHAT_FETCH_K=30\nOLLAMA_HOST=http://127.0.0.1:1\n")
    settings = load_settings()
    assert settings.k == 7 and settings.fetch_k == 30 and settings.ollama_host == "http://127.0.0.1:1"
    monkeypatch.setenv("DOCCHAT_K", "9")
    assert load_settings().k == 9
    assert load_settings(k=3).k == 3  # explicit overrides win over both
    assert load_settings(env_file=None).k == 9  # no .env: environment only


# ---------------------------------------------------------------- registry


def test_unknown_backend_lists_the_available_ones():
    with pytest.raises(BackendError) as raised:
        backends.backend_module("llamacpp")
    assert "Unknown backend 'llamacpp'. Available: huggingface, ollama, openai." in str(raised.value)
    assert "DOCCHAT_LLM_BACKEND" in raised.value.fix


def test_registry_builds_the_configured_kind(settings):
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    assert isinstance(backends.chat_backend(with_overrides(settings, llm_backend="ollama")).model, ChatOllama)
    openai_llm = backends.chat_backend(with_overrides(settings, llm_backend="openai", openai_api_key="sk-x")).model
    assert isinstance(openai_llm, ChatOpenAI) and openai_llm.streaming


# ---------------------------------------------------------------- command line


def test_help_works_and_imports_nothing_heavy():
    result = subprocess.run([sys.executable, "-m", "app.cli", "--help"], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("ingest", "ask", "search", "threads", "chat", "eval", "doctor"):
        assert command in result.stdout
    probe = ("import sys, app.cli; app.cli.build_parser(); "
             "print(sorted(m for m in ('torch', 'transformers', 'faiss', 'langchain_core', 'openai', "
             "'ollama', 'sentence_transformers', 'streamlit') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=60)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "docchat"
    result = subprocess.run([str(script), "doctor", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--json" in result.stdout


# ---------------------------------------------------------------- .env.example


def documented_names() -> list[str]:
    text = (REPO_ROOT / ".env.example").read_text()
    return re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE)


def test_env_example_documents_every_setting_exactly_once():
    names = documented_names()
    assert len(names) == len(set(names)), "a variable is documented twice"
    primary = {env_name(field) for field in Settings.model_fields}
    assert not primary - set(names), f"settings missing from .env.example: {sorted(primary - set(names))}"
    assert not set(names) - primary, f".env.example names no setting: {sorted(set(names) - primary)}"
    assert set(names) <= known_env_names()


def test_env_example_defaults_are_the_real_defaults():
    defaults = Settings(_env_file=None)
    text = (REPO_ROOT / ".env.example").read_text()
    for field in ("k", "fetch_k", "chunk_size", "chunk_overlap", "temperature", "max_new_tokens",
                  "score_threshold", "max_context_tokens", "max_tool_calls", "context_window"):
        value = getattr(defaults, field)
        assert re.search(rf"^# {env_name(field)}={value:g}$", text, flags=re.MULTILINE), field
