"""`docchat search "QUERY"`: the chunks a query retrieves, ranked, without the LLM."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", help="what to search for")
    parser.add_argument("--k", type=int, metavar="N", help="how many chunks to show (default: DOCCHAT_K)")
    parser.add_argument("--source", action="append", metavar="PATH", help="only this document or folder prefix (repeatable)")
    parser.add_argument(
        "--all", action="store_true",
        help="include chunks below DOCCHAT_SCORE_THRESHOLD (what the model would not see)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(settings, args) -> int:
    from app.engine import Engine

    engine = Engine(settings)
    sources = engine.search(
        args.query, k=args.k, sources=args.source, score_threshold=-1.0 if args.all else None
    )
    try:
        code = _print(args, sources)
        sys.stdout.flush()  # inside the try: a short output only reaches the pipe here
        return code
    except BrokenPipeError:  # `docchat search ... | head`: the reader has all it wanted
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _print(args, sources) -> int:
    if args.json:
        print(json.dumps({"query": args.query, "sources": [s.to_dict() for s in sources]}, ensure_ascii=False, indent=2))
        return 0
    if not sources:
        print("No chunk passed the score threshold (DOCCHAT_SCORE_THRESHOLD); try --all or other words.")
        return 0
    for source in sources:
        print(f"[{source.n}] {source.label()}  (score {source.score:.2f})")
        print(f"      {source.snippet}")
    return 0
