"""`docchat doctor`: one screen that says whether this configuration can work, and the fix if not.

Versions; the device the embedder and the LLM run on; the LLM backend and model and whether
they answer; the embedding model and its dimension; the index and its size; the data folder;
Tesseract for OCR (its version and languages).
Exit status 1 when something the app needs is broken (a missing index is only a warning:
`docchat ingest` creates it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

PACKAGES = ("docchat", "torch", "transformers", "sentence-transformers", "onnxruntime", "langchain",
            "langchain-core", "faiss-cpu", "streamlit")
MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "info": "    "}


@dataclass(frozen=True)
class Line:
    """One line of the report. status: ok | warn | fail | info."""

    name: str
    status: str
    detail: str
    fix: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(settings, args) -> int:
    lines = list(dict.fromkeys([  # one server serving both models is one line, not two
        *environment_lines(settings, getattr(args, "env_file", ".env")),
        *llm_lines(settings),
        *embedding_lines(settings),
        *index_lines(settings),
        data_folder_line(settings),
        ocr_line(settings),
    ]))
    ok = not any(line.status == "fail" for line in lines)
    if args.json:
        print(json.dumps({"ok": ok, "versions": versions(), "embedding": embedding_info(settings),
                          "ocr": ocr_info(settings), "checks": [asdict(x) for x in lines]}, indent=2))
    else:
        print(render(lines, ok))
    return 0 if ok else 1


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def render(lines: list[Line], ok: bool) -> str:
    shown = ["docchat doctor", "  " + " · ".join(f"{k} {v}" for k, v in versions().items()), ""]
    width = max(len(line.name) for line in lines)
    for line in lines:
        shown.append(f"{MARKS[line.status]} {line.name:<{width}}  {line.detail}")
        if line.fix:
            shown.append(f"     {'':<{width}}  fix: {line.fix}")
    shown += ["", "All checks passed." if ok else "Some checks failed: see the fix lines above."]
    return "\n".join(shown)


def _device(settings, backend: str) -> str:
    if backend == "huggingface":
        from app.backends.huggingface import resolve_device

        return resolve_device(settings)
    if backend == "ollama":
        return f"the Ollama server at {settings.ollama_host}"
    from app.backends.openai import base_url

    return f"the server at {base_url(settings)}"


def environment_lines(settings, env_file: str | None) -> list[Line]:
    source = env_file if env_file and Path(env_file).is_file() else "environment only (no .env file)"
    return [
        Line("Settings", "info", f"from {source}"),
        Line("Devices", "info", f"embedder on {_device(settings, settings.embedding_backend)}, "
                                f"LLM on {_device(settings, settings.llm_backend)}"),
    ]


def llm_lines(settings) -> list[Line]:
    from app.backends import chat_backend
    from app.backends.advice import model_advice

    head = Line("LLM", "info", f"{settings.llm_backend} · {settings.llm_model_name}")
    checks = chat_backend(settings).check()
    advice = model_advice(settings)
    answering = Line("Answers by", "warn" if advice.small else "info", advice.answering, advice.advice)
    return [head, *(Line(c.name, "ok" if c.ok else "fail", c.detail, c.fix) for c in checks), answering]


def embedding_lines(settings) -> list[Line]:
    """Load the embedding model and embed one sentence: its dimension is what the index stores."""
    from app.backends import embedding_backend

    lines = [Line(c.name, "ok" if c.ok else "fail", c.detail, c.fix) for c in embedding_backend(settings).check()]
    info = embedding_info(settings)
    if info["runtime"] in ("onnx", "torch"):
        how = "onnxruntime, exported once into the model cache" if info["runtime"] == "onnx" else "sentence-transformers"
        lines.append(Line("Embedding runtime", "info", f"{info['runtime']} {info['precision']} ({how}; "
                          "DOCCHAT_EMBEDDING_RUNTIME / DOCCHAT_EMBEDDING_PRECISION)"))
    return lines


def embedding_info(settings) -> dict[str, str]:
    """What computes the vectors, for --json: runtime (onnx, torch or a server) and precision."""
    precision = settings.embedding_precision if settings.embedding_runtime_name == "onnx" else "fp32"
    return {"backend": settings.embedding_backend, "model": settings.embedding_model_name,
            "runtime": settings.embedding_runtime_name, "precision": precision, "stamp": settings.embedding_stamp}


def index_lines(settings) -> list[Line]:
    from app.errors import StoreError

    if settings.database_dsn:
        return database_lines(settings)
    try:
        from vectorstore import Store
    except ImportError:  # the store package is optional in a partial install
        return [Line("Index", "warn", f"{settings.index_path}: the vectorstore package is not installed")]
    try:
        store = Store.open(settings)
    except StoreError as exc:
        if "No index yet" in exc.message:
            return [Line("Index", "warn", f"no index yet in {settings.index_path}",
                         "run `docchat ingest FOLDER` (or `docchat ingest` for the documents folder)")]
        return [Line("Index", "fail", exc.message, exc.fix)]
    try:
        documents = store.documents()
        detail = (f"{settings.index_path}: {len(store)} chunks from {len(documents)} documents "
                  f"(generation {store.generation}, {store.model_name} {store.embedding}, {store.dim} dims)")
    finally:
        store.close()
    return [Line("Index", "ok", detail)]


def database_lines(settings) -> list[Line]:
    """Server mode: the database reachable, pgvector and its version, schema version, rows, model."""
    from app.errors import StoreError
    from vectorstore.postgres.status import database_status

    try:
        status = database_status(settings)
    except StoreError as exc:
        return [Line("Database", "fail", exc.message, exc.fix)]
    lines = [Line("Database", "ok", f"{status['where']}: PostgreSQL {status['server']}, pgvector "
                  f"{status['pgvector']}, schema version {status['schema']}; {status['chunks']} chunks, "
                  f"{status['files']} documents, {status['threads']} conversation threads")]
    if status["model"] is None:
        lines.append(Line("Index", "warn", "no index yet in the database",
                          "run `docchat ingest FOLDER` (or `docchat ingest` for the documents folder)"))
    elif (status["model"], status["embedding"]) != (settings.embedding_model_name, settings.embedding_stamp):
        lines.append(Line("Index", "fail", f"built with {status['model']!r} as {status['embedding']}, but the settings "
                          f"name {settings.embedding_model_name!r} as {settings.embedding_stamp}",
                          "`docchat ingest --full` re-embeds with the settings' model and runtime"))
    else:
        lines.append(Line("Index", "ok", f"{status['model']} {status['embedding']}, {status['dim']} dims, HNSW index "
                          f"{_graph(status['hnsw'])}"))
    return lines


def data_folder_line(settings) -> Line:
    """The data folder must be writable (index, conversations, model cache live there)."""
    path = settings.data_path
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        return Line("Data folder", "fail", f"{path} cannot be written",
                    "Set DOCCHAT_DATA_DIR to a folder you can write to.")
    state = "" if path.exists() else " (created on first use)"
    return Line("Data folder", "ok", f"{path}{state}; documents folder {settings.docs_path}")


def ocr_info(settings) -> dict:
    """Tesseract as OCR will find it, for --json: version (None when absent), languages
    installed, those DOCCHAT_OCR_LANGUAGES asks for, and those missing."""
    from ingest import ocr

    wanted = settings.ocr_languages.split("+")
    try:
        found = ocr.tesseract()
    except Exception as exc:  # installed but broken
        return {"enabled": settings.ocr, "tesseract": None, "error": f"{type(exc).__name__}: {exc}",
                "languages": [], "wanted": wanted, "missing": wanted}
    version, installed = found if found else (None, [])
    return {"enabled": settings.ocr, "tesseract": version, "languages": installed, "wanted": wanted,
            "missing": ocr.absent_languages(settings.ocr_languages, installed) if found else wanted}


def ocr_line(settings) -> Line:
    """OCR is optional: without Tesseract (or a language) scanned pages are reported, not read.
    So a gap is a warning with the install line, never a failure."""
    from ingest import ocr

    info = ocr_info(settings)
    if not settings.ocr:
        return Line("OCR", "info", "off (DOCCHAT_OCR=false): scanned pages and images are reported, not read")
    if info.get("error"):
        return Line("OCR", "warn", f"tesseract is installed but does not run ({info['error']})",
                    f"reinstall it: {ocr.INSTALL_HINT}")
    if info["tesseract"] is None:
        return Line("OCR", "warn", "tesseract not found: scanned PDF pages and images are reported as needing OCR",
                    ocr.INSTALL_HINT)
    detail = (f"tesseract {info['tesseract']}, languages installed: {', '.join(info['languages']) or 'none'}; "
              f"DOCCHAT_OCR_LANGUAGES={settings.ocr_languages}")
    if info["missing"]:
        return Line("OCR", "warn", f"{detail}: {'+'.join(info['missing'])} not installed",
                    ocr.language_hint(info["missing"]))
    return Line("OCR", "ok", detail)


def _graph(graph: dict | None) -> str:
    return f"present (m {graph['m']}, ef_construction {graph['ef_construction']})" if graph else "MISSING"
