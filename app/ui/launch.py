"""`docchat chat`: start the chat page (Streamlit) on http://localhost:8501.

On a fresh install (no index, empty documents folder) it first copies the bundled sample
documents into the documents folder and ingests them, so the page has something to answer
from. Only the standard library is imported at the top: `docchat --help` stays instant.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from pathlib import Path

# The repository root, derived here rather than imported from app.config: that import
# (pydantic-settings) alone would triple the time `docchat --help` takes.
REPO_ROOT = Path(__file__).resolve().parent.parent.parent

PAGE = Path(__file__).resolve().parent / "page.py"
SAMPLES_DIR = REPO_ROOT / "samples"
# What counts as a sample document (the samples folder also holds the script that makes them).
SAMPLE_SUFFIXES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf", ".docx"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    parser.add_argument(
        "--address", default="localhost", help="address to listen on (default: localhost only)"
    )
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser tab (headless server)"
    )
    parser.add_argument(
        "--no-samples", action="store_true", help="on first run, do not add the bundled samples"
    )


def run(settings, args) -> int:
    """Seed the samples on first run, then replace this process with the Streamlit server."""
    if not args.no_samples and needs_samples(settings):
        seed_samples(settings)
    prepare_models(settings)
    command = streamlit_command(settings, args)
    sys.stdout.flush()
    os.execv(command[0], command)
    return 0  # not reached: execv replaces the process


def prepare_models(settings) -> None:
    """Convert the embedded chat model and export the embedding model now (with progress here),
    so that the page is ready when it says so; say which model answers and whether a better
    one is at hand."""
    from app.backends.advice import model_advice
    from app.errors import DocchatError

    from app.backends import huggingface

    say = lambda line: print(line, flush=True)  # noqa: E731
    steps = [(settings.llm_backend, huggingface.prepare_chat_model),
             (settings.embedding_backend, huggingface.prepare_embedding_model)]
    for backend, prepare in steps:
        if backend != "huggingface":
            continue
        try:
            prepare(settings, say=say)
        except DocchatError as exc:  # the page shows it too, with the same fix
            print(f"{exc.message}\nFix: {exc.fix}", file=sys.stderr)
    advice = model_advice(settings)
    print(f"Answers by {advice.answering}.", flush=True)
    if advice.advice:
        print(advice.advice, flush=True)


def streamlit_command(settings, args) -> list[str]:
    """The `python -m streamlit run` command line for the page."""
    return [
        sys.executable, "-m", "streamlit", "run", str(PAGE),
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--server.headless", "true" if args.no_browser else "false",
        "--server.maxUploadSize", str(max(1, math.ceil(settings.upload_max_mb))),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # the menu with Settings: light, dark or the system theme
        "--",  # what follows goes to the page, which loads the same settings
        "--env-file", str(getattr(args, "env_file", ".env") or ""),
    ]  # fmt: skip


def needs_samples(settings) -> bool:
    """True on a fresh install: no index (on disk, or in the database) and nothing in the documents folder."""
    index = settings.index_path
    if settings.database_dsn:
        from vectorstore.backend import has_index as database_has_index

        has_index = database_has_index(settings)
    else:
        has_index = index.is_dir() and any(index.iterdir())
    docs = settings.docs_path
    has_docs = docs.is_dir() and any(docs.iterdir())
    return not has_index and not has_docs


def sample_files(folder: Path = SAMPLES_DIR) -> list[Path]:
    """The bundled sample documents (not the scripts that generate them)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def seed_samples(settings, folder: Path = SAMPLES_DIR) -> int:
    """Copy the sample documents into the documents folder and ingest them. Returns the count."""
    files = sample_files(folder)
    if not files:
        return 0
    docs = settings.docs_path
    for path in files:
        target = docs / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    print(f"First run: added {len(files)} sample documents to {docs}; indexing them...", flush=True)

    from ingest.sync import sync

    summary = sync(settings, [docs])
    print(
        f"Indexed {summary.chunks_added} chunks from {len(summary.added)} documents "
        f"in {summary.seconds:.1f} s.",
        flush=True,
    )
    for source, reason in summary.failed:
        print(f"  could not index {source}: {reason}", file=sys.stderr)
    return len(files)
