"""Ingest benchmark on the PostgreSQL 15 HTML documentation; prints one table.

    python bench/ingest.py [--corpus DIR] [--limit N] [--data-dir DIR] [--skip-langchain]

Measured in one run, with the embedding model loaded once beforehand (its load time is a row
of its own), so every ratio compares like with like:
  1. docchat full ingest (`sync(full=True)`): wall time, files, chunks, chunks/s, peak RSS
  2. a bare SentenceTransformer.encode of exactly the texts docchat embedded (same model,
     same batch size, one call) -> ratio full / bare (target <= 1.15)
  3. an unchanged re-ingest -> % of full (target <= 3 %)
  4. a re-ingest after appending a paragraph to one file -> seconds, vs a bare encode of all
     that file's chunks (target: that + <= 2 s); the file is restored afterwards
  5. the plain LangChain recipe (DirectoryLoader + BSHTMLLoader, RecursiveCharacterTextSplitter,
     HuggingFaceEmbeddings, FAISS.from_documents) -> ratio docchat / LangChain (target <= 1)
The full index stays in --data-dir (default .bench/pg-data: index at .bench/pg-data/index).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_CORPUS = REPO / "corpora/postgresql-doc-15/usr/share/doc/postgresql-doc-15/html"


class Recording:
    """The real embedding backend; remembers the texts docchat asked it to embed."""

    def __init__(self, backend):
        self.backend = backend
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return self.backend.embed(texts)


def bare_batch(settings) -> int:
    """The bare torch encode's batch: what docchat's torch runtime would use (the setting, else 32)."""
    return settings.model_copy(update={"embedding_runtime": "torch"}).embed_batch


def bare_model(settings):
    """The same sentence-transformers model, loaded directly: the floor an ingest is compared to."""
    from sentence_transformers import SentenceTransformer

    from app.backends.huggingface import embedding_model_path, resolve_device

    return SentenceTransformer(embedding_model_path(settings.embedding_model_name), device=resolve_device(settings))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def limited_corpus(corpus: Path, limit: int | None, scratch: Path) -> Path:
    """The first N files (by name) as a folder of links, or the corpus itself."""
    if not limit:
        return corpus
    folder = scratch / "corpus"
    folder.mkdir()
    for path in sorted(p for p in corpus.iterdir() if p.is_file())[:limit]:
        shutil.copy2(path, folder / path.name)
    return folder


def modify_one(settings, corpus: Path, embeddings, model, sync) -> dict:
    """Append a paragraph to the median-sized HTML file; time the re-ingest; restore it."""
    from vectorstore import Store

    store = Store.open(settings)
    documents = sorted((d for d in store.documents() if d.chunks), key=lambda d: d.chunks)
    target = documents[len(documents) // 2]
    path = corpus / target.source
    original, stat = path.read_bytes(), path.stat()
    texts = [h.text for h in store.chunks_of(target.source)]
    _, bare = timed(lambda: model.encode(texts, batch_size=bare_batch(settings), normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False))
    try:
        path.write_bytes(original.replace(b"</body>", b"<p>A paragraph added by the ingest benchmark.</p></body>"))
        summary, seconds = timed(lambda: sync(settings, [corpus], embedder=embeddings))
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        sync(settings, [corpus], embedder=embeddings)
    return {"file": target.source, "file_chunks": target.chunks, "seconds": seconds, "bare_file": bare,
            "embedded": summary.chunks_embedded}


def langchain_recipe(corpus: Path, settings, embeddings) -> tuple[int, float]:
    from langchain_community.document_loaders import BSHTMLLoader, DirectoryLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    def run():
        loader = DirectoryLoader(str(corpus), glob="**/*.htm*", loader_cls=BSHTMLLoader,
                                 loader_kwargs={"open_encoding": "utf-8"})
        splitter = RecursiveCharacterTextSplitter(chunk_size=settings.chunk_size, chunk_overlap=settings.chunk_overlap)
        chunks = splitter.split_documents(loader.load())
        FAISS.from_documents(chunks, embeddings)
        return len(chunks)

    return timed(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".bench/pg-data")
    parser.add_argument("--skip-langchain", action="store_true")
    parser.add_argument("--runtime", choices=["auto", "onnx", "torch"], default="auto", help="DOCCHAT_EMBEDDING_RUNTIME")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="fp32", help="DOCCHAT_EMBEDDING_PRECISION")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"corpus not found: {args.corpus} (see ../shared/ENVIRONMENT.md: apt-get download postgresql-doc-15)")
        return 2

    from app.backends import embedding_backend
    from app.config import load_settings
    from ingest.sync import sync

    settings = load_settings(env_file=None, data_dir=args.data_dir.resolve(), embedding_runtime=args.runtime,
                             embedding_precision=args.precision)
    embeddings, load_s = timed(lambda: embedding_backend(settings))
    embeddings.prepare()
    model = bare_model(settings)
    rows = [(f"model load, {settings.embedding_stamp} (outside the timings below)", f"{load_s:.1f} s")]

    with tempfile.TemporaryDirectory() as scratch:
        corpus = limited_corpus(args.corpus.resolve(), args.limit, Path(scratch))
        recording = Recording(embeddings)
        full, full_s = timed(lambda: sync(settings, [corpus], full=True, embedder=recording))
        files, chunks = len(full.added), full.chunks_added
        rows += [("docchat full ingest", f"{full_s:.1f} s"), ("files ingested / skipped / failed",
                 f"{files} / {len(full.skipped)} / {len(full.failed)}"), ("chunks", f"{chunks}"),
                 ("chunks/s", f"{chunks / full_s:.1f}"), ("peak RSS after full ingest", f"{peak_rss_mb():.0f} MB")]

        texts = recording.texts
        _, bare_s = timed(lambda: model.encode(texts, batch_size=bare_batch(settings), normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False))
        rows += [(f"bare SentenceTransformer.encode of the {len(texts)} embedded texts", f"{bare_s:.1f} s"),
                 ("ratio full ingest / bare encode (target <= 1.15)", f"{full_s / bare_s:.3f}")]

        unchanged, unchanged_s = timed(lambda: sync(settings, [corpus], embedder=embeddings))
        rows += [("unchanged re-ingest", f"{unchanged_s:.2f} s = {100 * unchanged_s / full_s:.2f} % of full (target <= 3 %)")]

        modified = modify_one(settings, corpus, embeddings, model, sync)
        rows += [(f"re-ingest after editing {modified['file']} ({modified['file_chunks']} chunks, "
                  f"{modified['embedded']} re-embedded)", f"{modified['seconds']:.2f} s"),
                 ("  bare encode of all that file's chunks (target: re-ingest <= this + 2 s)", f"{modified['bare_file']:.2f} s")]

        if not args.skip_langchain:
            (lc_chunks, lc_s) = langchain_recipe(corpus, settings, embeddings.embeddings)
            rows += [(f"plain LangChain recipe ({lc_chunks} chunks)", f"{lc_s:.1f} s"),
                     ("ratio docchat full / LangChain (target <= 1)", f"{full_s / lc_s:.3f}")]

    width = max(len(name) for name, _ in rows)
    print(f"\nIngest benchmark: {args.corpus}{f' (first {args.limit} files)' if args.limit else ''}, "
          f"batch size {settings.embed_batch} (bare torch {bare_batch(settings)}), chunk size {settings.chunk_size}/{settings.chunk_overlap}, "
          f"embed_headings={settings.embed_headings}, {os.cpu_count()} CPUs")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"\nIndex kept in {settings.index_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
