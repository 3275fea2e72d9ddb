"""Embedding runtimes compared: speed (interleaved, one run) and retrieval quality against torch fp32.

    python bench/embedding_backends.py                    # PostgreSQL and git sets
    python bench/embedding_backends.py --speed-sample 300 --corpora pg

Chunks are read back from an index built by the current code with fp32 vectors (``.bench/pg-data``,
``.bench/git-data`` from bench/ingest.py; ONNX fp32 gives torch fp32's vectors): each chunk's
embedded text is rebuilt from its metadata and checked against its content hash. Each other
runtime (ONNX int8, and ``--int8-variants``: int8 files quantized other ways) embeds every chunk
again; every runtime embeds the questions. Quality: dense-only hit@1/hit@5 and MRR over the answerable single-turn questions
(so the embedder is all that differs), how many questions flip in or out of the top 5,
and the median cosine of each chunk's vector to torch's.
Speed: batches of real chunks and single short questions (one thread), runtimes interleaved
round by round so load on the shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.config import load_settings  # noqa: E402
from app.evaluation.dataset import load_items  # noqa: E402
from app.evaluation.scoring import gold_rank  # noqa: E402
from app.backends.huggingface import Embedding  # noqa: E402
from ingest.splitter import _with_context  # noqa: E402

# A worktree has no .bench of its own: read the main checkout's (read-only).
BENCH = REPO / ".bench" if (REPO / ".bench").is_dir() else REPO.parent / "main/.bench"
CORPORA = {
    "pg": (BENCH / "pg-data", REPO.parent / "shared/eval/postgres-qa.jsonl"),
    "git": (BENCH / "git-data", REPO / "bench/git-qa/git-qa.jsonl"),
}
PG_PAGES = REPO.parent / "main/corpora/postgresql-doc-15/usr/share/doc/postgresql-doc-15/html"
RUNTIMES = {"torch-fp32": {"embedding_runtime": "torch"},
            "onnx-fp32": {"embedding_runtime": "onnx", "embedding_precision": "fp32"},
            "onnx-int8": {"embedding_runtime": "onnx", "embedding_precision": "int8"}}
# Timed in --ingest only: its documents are embedded as onnx-int8's, its questions as onnx-fp32's.
INGEST_ONLY = {"onnx-int8-documents": {"embedding_runtime": "onnx", "embedding_precision": "int8-documents"}}


def read_chunks(data_dir: Path) -> tuple[list[str], list[str], np.ndarray, str]:
    """Embedded texts, sources, stored vectors and their stamp (e.g. ``onnx-fp32``) of an index."""
    from vectorstore import Store

    store = Store.open(load_settings(env_file=None, data_dir=data_dir), check_model=False)
    texts, sources, ids = [], [], []
    for chunk_id, text, metadata in store._db.execute("SELECT id, text, metadata FROM chunks ORDER BY id"):
        meta = json.loads(metadata)
        embedded = _with_context(meta["title"], meta.get("heading"), text)
        if hashlib.sha256(embedded.encode()).hexdigest()[:32] != meta["content_hash"]:
            embedded = text  # built with DOCCHAT_EMBED_HEADINGS=false
        texts.append(embedded)
        sources.append(meta["source"])
        ids.append(chunk_id)
    vectors = store.vectors(ids)
    stamp = store.embedding
    store.close()
    return texts, sources, vectors, stamp


class Variant:
    """An int8 file quantized from the export's fp32 graph another way (``--int8-variants``)."""

    def __init__(self, folder: Path, name: str, work: Path, batch_size: int):
        import onnx

        from ingest.onnx_encoder import FILES, OnnxEncoder, quantize

        ops, _, skip_last = name.partition("-except-last")
        fp32 = folder / FILES["fp32"]
        last = []
        if skip_last is not None and "-except-last" in name:
            graph = onnx.load(str(fp32), load_external_data=False).graph
            layers = sorted({int(n.name.split("layer.")[1].split("/")[0]) for n in graph.node if "layer." in n.name})
            last = [n.name for n in graph.node if f"layer.{layers[-1]}/" in n.name]
        target = work / f"{name}.onnx"
        quantize(fp32, target, ops=ops.split("+"), exclude=last)
        self.encoder = OnnxEncoder(folder, "int8", batch_size, model_file=target)

    def prepare(self) -> None:
        pass

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)


def figures(query_vectors: np.ndarray, chunk_vectors: np.ndarray, sources: list[str], items) -> dict:
    ranks = []
    for vector, item in zip(query_vectors, items):
        top = np.argsort(-(chunk_vectors @ vector))[:5]
        ranks.append(gold_rank([sources[i] for i in top], item.gold))
    return {"hit@1": np.mean([r == 1 for r in ranks]), "hit@5": np.mean([r is not None for r in ranks]),
            "mrr": np.mean([1 / r if r else 0 for r in ranks]), "ranks": ranks}


def speed(embedders: dict, texts: list[str], questions: list[str], rounds: int) -> dict:
    """Seconds per chunk (batches) and per question (single), runtimes interleaved by round."""
    batch_s = {name: 0.0 for name in embedders}
    query_ms = {name: [] for name in embedders}
    per_round = max(1, len(texts) // rounds)
    for r in range(rounds):
        part = texts[r * per_round:(r + 1) * per_round]
        for name, embedder in embedders.items():
            start = time.perf_counter()
            embedder.embed(part)
            batch_s[name] += time.perf_counter() - start
        for question in questions[r::rounds]:
            for name, embedder in embedders.items():
                start = time.perf_counter()
                embedder.embed([question])
                query_ms[name].append(1000 * (time.perf_counter() - start))
    n = per_round * rounds
    return {name: {"chunks/s": n / batch_s[name], "query p50 ms": statistics.median(query_ms[name]),
                   "query p95 ms": float(np.percentile(query_ms[name], 95))} for name in embedders}


def ingest_rounds(embedders: dict, base, corpus: Path, limit: int, rounds: int, work: Path) -> None:
    """Full ingests (`sync(full=True)`: parse, split, embed, write) of the first ``limit`` files,
    one per runtime per round, runtimes in a rotated order each round; prints wall times and
    the ratio to torch's, so load that drifts during the run hits all alike."""
    import shutil

    import importlib.util

    from ingest.sync import sync

    spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "bench/ingest.py")  # not the ingest package
    bench_ingest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_ingest)
    folder = bench_ingest.limited_corpus(corpus, limit, work)
    names = list(embedders)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    chunks = {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            data = work / f"ingest-{name.replace(' ', '-')}"
            shutil.rmtree(data, ignore_errors=True)
            changes = dict({**RUNTIMES, **INGEST_ONLY}.get(name, RUNTIMES["onnx-int8"]))
            settings = base.model_copy(update={**changes, "data_dir": data})
            start = time.perf_counter()
            summary = sync(settings, [folder], full=True, embedder=embedders[name])
            seconds[name].append(time.perf_counter() - start)
            chunks[name] = summary.chunks_added
            shutil.rmtree(data, ignore_errors=True)
    reference = statistics.median(seconds["torch-fp32"]) if "torch-fp32" in seconds else None
    print(f"\n== full ingest of the first {limit} files of {corpus} ({rounds} rounds, load {os.getloadavg()[0]:.1f})")
    for name in names:
        median = statistics.median(seconds[name])
        ratio = f"  {median / reference:.2f}x torch" if reference else ""
        print(f"  ingest {name:<19} {median:6.1f} s (runs {', '.join(f'{x:.1f}' for x in seconds[name])}), "
              f"{chunks[name]} chunks, {chunks[name] / median:5.1f} chunks/s{ratio}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default="pg,git")
    parser.add_argument("--speed-sample", type=int, default=600, help="chunks per runtime for the speed figures")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batch-sizes", default="", help="also time ONNX int8 at these batch sizes, e.g. 16,32,64")
    parser.add_argument("--quality", default="onnx-int8",
                        help="runtimes that re-embed every chunk (the index's own are stored)")
    parser.add_argument("--int8-variants", default="",
                        help="int8 files quantized from the fp32 export another way, e.g. "
                        "MatMul,MatMul+Attention-except-last (ops to quantize; -except-last keeps the last layer fp32)")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out of the speed rounds")
    parser.add_argument("--ingest", type=int, default=0, metavar="N",
                        help="also time full ingests of the first N PostgreSQL pages per runtime (interleaved)")
    parser.add_argument("--ingest-rounds", type=int, default=1)
    args = parser.parse_args()
    base = load_settings(env_file=None)
    embedders = {name: Embedding(base.model_copy(update=changes)) for name, changes in RUNTIMES.items()
                 if not (args.no_torch and name == "torch-fp32")}
    for embedder in embedders.values():
        embedder.prepare()
    work = Path(tempfile.mkdtemp(prefix="int8-variants-"))
    if args.int8_variants:
        from ingest.embedder import LocalEncoder

        folder = LocalEncoder(base.model_copy(update=RUNTIMES["onnx-int8"])).load()._onnx("int8").folder
        for name in args.int8_variants.split(","):
            embedders[f"int8 {name}"] = Variant(folder, name, work, base.embed_batch)
    if args.ingest:
        timed = {n: e for n, e in embedders.items() if n in RUNTIMES}
        timed |= {name: Embedding(base.model_copy(update=changes)) for name, changes in INGEST_ONLY.items()}
        ingest_rounds(timed, base, PG_PAGES, args.ingest, args.ingest_rounds, work)
    for key in [c for c in args.corpora.split(",") if c]:
        data_dir, qa = CORPORA[key]
        texts, sources, stored, stamp = read_chunks(data_dir)
        items = [i for i in load_items(qa) if i.kind == "single"]
        questions = [i.question for i in items]
        rng = np.random.default_rng(0)
        sample = [texts[i] for i in rng.choice(len(texts), size=min(args.speed_sample, len(texts)), replace=False)]
        print(f"\n== {key}: {len(texts)} chunks, {len(items)} single-turn questions ({data_dir}; stored vectors: {stamp}, "
              "which for ONNX fp32 are torch fp32's to cosine >= 0.99999: tests/test_embedder.py)")
        for name, row in (speed(embedders, sample, questions, args.rounds) if sample else {}).items():
            print(f"  speed {name:<11} " + "  ".join(f"{k} {v:7.1f}" for k, v in row.items()), flush=True)
        for size in [int(s) for s in args.batch_sizes.split(",") if s]:
            embedder = Embedding(base.model_copy(update={"embed_batch_size": size, "embedding_precision": "int8"}))
            embedder.prepare()
            start = time.perf_counter()
            embedder.embed(sample)
            print(f"  speed onnx-int8 batch {size:<4} chunks/s {len(sample) / (time.perf_counter() - start):7.1f}", flush=True)
        reference = figures(embedders["onnx-fp32"].embed(questions), stored, sources, items)
        print(f"  quality {stamp} (stored)  hit@1 {reference['hit@1']:.3f}  hit@5 {reference['hit@5']:.3f}  "
              f"MRR {reference['mrr']:.3f}  (stored chunk vectors, questions by onnx-fp32)", flush=True)
        for name in [q for q in args.quality.split(",") if q] + [n for n in embedders if n.startswith("int8 ")]:
            start = time.perf_counter()
            vectors = embedders[name].embed(texts)
            seconds = time.perf_counter() - start
            cosine = np.einsum("ij,ij->i", vectors, stored)
            result = figures(embedders[name].embed(questions), vectors, sources, items)
            flips = sum((a is None) != (b is None) for a, b in zip(result["ranks"], reference["ranks"]))
            print(f"  quality {name:<11}  hit@1 {result['hit@1']:.3f}  hit@5 {result['hit@5']:.3f}  "
                  f"MRR {result['mrr']:.3f}  top-5 flips {flips}  chunk cosine to stored median "
                  f"{np.median(cosine):.4f} min {cosine.min():.4f}  (all chunks in {seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
