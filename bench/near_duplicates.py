"""The near-duplicate pass of retrieval, alone: two passes per query (as retrieve() makes) over
the real candidates (dense + keyword, fused) of the PostgreSQL questions, caches cleared before
each query so a repeated question does not flatter it.

    python bench/near_duplicates.py [--data-dir .bench/pg-data]

Run it in two checkouts one after the other to compare; `uptime` is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".bench/pg-data"))
    parser.add_argument("--questions", type=Path, default=Path("/work/shared/eval/postgres-qa.jsonl"))
    args = parser.parse_args()
    from app.config import load_settings
    from app.engine import Engine
    from app.engine import retrieval
    from app.engine.fusion import add_keyword_hits

    settings = load_settings(env_file=None, data_dir=args.data_dir)
    engine = Engine(settings)
    rows = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    candidates = []
    for question in (row["question"] for row in rows if "question" in row):
        vector = engine.embedder.embed_query(question)
        dense = engine.store.search(vector, settings.fetch_k, fetch_k=settings.fetch_k)
        candidates.append(add_keyword_hits(dense, question, vector, store=engine.store, fetch_k=settings.fetch_k))
    times = []
    for hits in candidates:
        for cached in (getattr(retrieval, name, None) for name in ("_words", "_near_duplicate")):
            if hasattr(cached, "cache_clear"):
                cached.cache_clear()
        start = time.perf_counter()
        retrieval.drop_near_duplicates(hits)
        retrieval.drop_near_duplicates(hits[: settings.fetch_k])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    sizes = sorted(len(hits) for hits in candidates)
    print(f"{len(times)} queries, {sizes[len(sizes) // 2]} candidates (median); two de-duplication passes: "
          f"p50 {times[len(times) // 2]:.2f} ms, p95 {times[int(len(times) * 0.95)]:.2f} ms")
    print("uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
