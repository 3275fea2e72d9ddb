"""Query-side benchmark: retrieval latency, time to first token, prompt size, answer time, RSS.

Runs the real Engine (packaged embedding model, FAISS index, packaged SmolLM2) over the
PostgreSQL docs index built by the ingest benchmark and the question set in
/work/shared/eval/postgres-qa.jsonl, and prints p50/p95 figures:

    python bench/query.py                         # retrieval + answers at the configured budget
    python bench/query.py --sweep 400,700,1000    # + TTFT vs gold-page coverage per context budget
    python bench/query.py --retrieval-only

Targets (2 cores): retrieval p95 <= 50 ms, TTFT p50 <= 2 s, peak RSS <= 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".bench" / "pg-data"
DEFAULT_QUESTIONS = Path("/work/shared/eval/postgres-qa.jsonl")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def line(name: str, values: list[float], unit: str) -> str:
    return f"  {name:<28} p50 {percentile(values, 50):9.1f} {unit:<3} p95 {percentile(values, 95):9.1f} {unit}  (n={len(values)})"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load_questions(path: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    rows = [row for row in rows if "question" in row]  # multi-turn rows ("turns") are the eval's
    return rows[:limit] if limit else rows


def gold_seen(answer, gold: list[str]) -> bool:
    names = {Path(s.source).name for s in answer.sources}
    return any(Path(g).name in names for g in gold)


def reads_done() -> None:
    """Wait for the keyword scores being read in the background (vectorstore/postings.py)."""
    try:
        from vectorstore import postings
    except ImportError:  # a checkout from before the word scores were kept
        return
    postings.reads_done()


def bench_retrieval(engine, questions) -> list[float]:
    from app.engine.retrieval import RetrievalQuery, retrieve

    times = []
    for row in questions:
        request = RetrievalQuery.from_settings(row["question"], engine.settings)
        start = time.perf_counter()
        retrieve(request, store=engine.store, embedder=engine.embedder)
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench_answers(engine, questions) -> dict:
    ttft, model_ttft, total, prompt, tokens, gold_hits, answerable = [], [], [], [], [], 0, 0
    for row in questions:
        count = 0
        answer = None
        for event in engine.stream(row["question"]):
            if type(event).__name__ == "Token":
                count += 1
            elif type(event).__name__ == "Done":
                answer = event.answer
        if answer.timings.first_token_ms is not None:
            ttft.append(answer.timings.first_token_ms)
        if answer.timings.model_first_token_ms is not None:
            model_ttft.append(answer.timings.model_first_token_ms)
        total.append(answer.timings.total_ms)
        if answer.prompt_tokens:
            prompt.append(answer.prompt_tokens)
        tokens.append(count)
        engine.threads.delete(answer.thread_id)  # leave the benchmark's data folder as it was
        if row.get("gold"):
            answerable += 1
            gold_hits += gold_seen(answer, row["gold"])
    return {"ttft": ttft, "model_ttft": model_ttft, "total": total, "prompt": prompt, "tokens": tokens,
            "gold_rate": gold_hits / answerable if answerable else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--limit", type=int, default=30, help="questions for the answer runs (retrieval uses all)")
    parser.add_argument("--answer-tokens", type=int, default=100)
    parser.add_argument("--sweep", default="", help="comma-separated DOCCHAT_MAX_CONTEXT_TOKENS values to compare (first token only)")
    parser.add_argument("--retrieval-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="ask the retrieval questions this many times over")
    parser.add_argument("--no-read-ahead", action="store_true",
                        help="ask before the common words' keyword scores are read (as `docchat ask` does)")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (args.data_dir / "index" / "CURRENT").exists():
        print(f"No index at {args.data_dir}/index: run the ingest benchmark first.", file=sys.stderr)
        return 2
    from app.config import load_settings, with_overrides
    from app.engine import Engine

    settings = load_settings(env_file=None, data_dir=args.data_dir, temperature=0.0,
                             max_new_tokens=args.answer_tokens)
    all_questions = load_questions(args.questions, None)
    questions = all_questions[: args.limit]
    engine = Engine(settings)
    start = time.perf_counter()
    engine.store, engine.embedder.prepare()  # noqa: B018
    if not args.retrieval_only:
        engine.chat.prepare()
    print(f"index: {len(engine.store)} chunks; models loaded in {time.perf_counter() - start:.1f} s; "
          f"k={settings.k} threshold={settings.score_threshold} search={settings.search_type}")

    if not args.no_read_ahead:  # as the page and the servers do when they open the index
        start = time.perf_counter()
        engine.read_ahead()
        reads_done()
        print(f"common words' keyword scores read ahead in {time.perf_counter() - start:.2f} s")
    bench_retrieval(engine, all_questions[:3])  # warm-up
    print("retrieval (query embedding + search + selection):")
    first = bench_retrieval(engine, all_questions)
    print(line("retrieve_ms", first, "ms"))
    if args.repeat > 1:  # the keyword side keeps each word's scores once read (vectorstore/postings.py)
        reads_done()  # in use, read while the first answers are written
        print(line("retrieve_ms, asked again", bench_retrieval(engine, all_questions * (args.repeat - 1)), "ms"))
    if args.retrieval_only:
        print(f"  peak RSS {peak_rss_mib():.0f} MiB")
        return 0

    engine.ask(questions[0]["question"])  # warm-up: first generation compiles kernels
    figures = bench_answers(engine, questions)
    print(f"answers (max_context_tokens={settings.max_context_tokens}, up to {args.answer_tokens} new tokens):")
    print(line("first_token_ms (shown)", figures["ttft"], "ms"))
    print(line("model_first_token_ms", figures["model_ttft"], "ms"))
    print(line("prompt_tokens", figures["prompt"], "tok"))
    print(line("answer_tokens (streamed)", figures["tokens"], "tok"))
    print(line("total_ms", figures["total"], "ms"))
    print(f"  gold page among the chunks the model saw: {figures['gold_rate']:.0%}")

    if args.sweep:
        print("context budget sweep (first token only):")
        print(f"  {'max_context_tokens':>18} {'TTFT p50':>10} {'TTFT p95':>10} {'prompt p50':>11} {'gold seen':>10}")
        for budget in [int(b) for b in args.sweep.split(",")]:
            swept = Engine(with_overrides(settings, max_context_tokens=budget, max_new_tokens=1),
                           chat=engine.chat, embedder=engine.embedder, store=engine.store)
            result = bench_answers(swept, questions)
            print(f"  {budget:>18} {percentile(result['ttft'], 50):>8.0f}ms {percentile(result['ttft'], 95):>8.0f}ms "
                  f"{percentile(result['prompt'], 50):>11.0f} {result['gold_rate']:>10.0%}")
    print(f"peak RSS {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
