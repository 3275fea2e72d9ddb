"""`docchat eval QA.jsonl`: measure retrieval, citations, abstention and latency on a
question set, through the same engine the chat page uses."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("qa", metavar="QA.jsonl", help="question set (format: shared/eval/README.md)")
    parser.add_argument(
        "--k", type=int, default=5, metavar="N", help="chunks retrieved per question (default 5, the depth hit@5 needs)"
    )
    parser.add_argument(
        "--no-llm",
        action="store_true",
        help="retrieval only (fast): no answers; a follow-up is searched as previous turn + follow-up",
    )
    parser.add_argument("--out", metavar="FILE", help="write the per-question table (.jsonl or .csv)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N items")
    parser.add_argument("--ids", metavar="ID,ID", help="only these item ids (comma-separated)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        metavar="X",
        help="override DOCCHAT_SCORE_THRESHOLD for this run (to tune abstention)",
    )


def select(items: list, *, ids: str | None, limit: int | None) -> list:
    """The items a run covers; unknown ids are an error, not a silent empty run."""
    from app.errors import DocchatError

    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        known = {item.id for item in items}
        missing = [i for i in wanted if i not in known]
        if missing:
            raise DocchatError(
                f"--ids: no item {', '.join(missing)} in the question set.",
                fix="Use the ids of the file's `id` fields.",
            )
        items = [item for item in items if item.id in wanted]
    return items[:limit] if limit else items


def run(settings, args) -> int:
    import json

    from app.config import with_overrides
    from app.errors import DocchatError
    from app.evaluation.dataset import load_items
    from app.evaluation.report import check_table_path, summary_table, write_table
    from app.evaluation.runner import evaluate
    from app.evaluation.scoring import summarize

    if args.k < 1:
        raise DocchatError(f"--k {args.k}: must be at least 1.", fix="Use --k 5 for hit@5.")
    if args.score_threshold is not None:
        settings = with_overrides(settings, score_threshold=args.score_threshold)
    if args.out:
        check_table_path(args.out)
    items = select(load_items(args.qa), ids=args.ids, limit=args.limit)
    from app.engine import Engine

    engine = Engine(settings)  # the chat model loads on first use: --no-llm never loads it

    def progress(result) -> None:
        rank = result.gold_rank
        if not result.item.answerable:
            mark = "abstained" if result.abstained else "answered (should have abstained)"
        else:
            mark = "abstained" if result.abstained else (f"gold at {rank}" if rank else "gold missed")
        print(f"  {result.item.id}: {mark}", file=sys.stderr, flush=True)

    results = evaluate(
        engine, items, k=args.k, use_llm=not args.no_llm, not_found=engine.prompts.not_found, on_result=progress
    )
    summary = summarize(results)
    summary.update(
        question_set=str(args.qa),
        k=args.k,
        mode="retrieval" if args.no_llm else "answers",
        score_threshold=settings.score_threshold,
    )
    if args.out:
        write_table(results, args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        mode = "retrieval only (--no-llm)" if args.no_llm else f"answers by {settings.llm_model_name}"
        title = f"docchat eval: {args.qa}, {len(results)} items, k={args.k}, {mode}"
        print(summary_table(summary, title=title, use_llm=not args.no_llm))
        if args.out:
            print(f"\nPer-question table: {args.out}")
    return 0

