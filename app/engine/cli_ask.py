"""`docchat ask "QUESTION"`: stream the answer, then the numbered sources (or one JSON object)."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="the question to answer from your documents")
    parser.add_argument("--thread", metavar="ID", help="continue this conversation thread (see `docchat threads`)")
    parser.add_argument("--k", type=int, metavar="N", help="how many chunks to retrieve (default: DOCCHAT_K)")
    parser.add_argument(
        "--source", action="append", metavar="PATH",
        help="only search this document or folder prefix (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")


def run(settings, args) -> int:
    from app.engine import Done, Engine, Token, ToolCallEvent

    engine = Engine(settings)
    stream = engine.stream(args.question, args.thread, k=args.k, sources=args.source)
    answer = None
    for event in stream:
        if isinstance(event, Done):
            answer = event.answer
        elif args.json:
            continue
        elif isinstance(event, Token):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ToolCallEvent):
            call = event.tool_call
            print(f"\n  [tool] {call.name}({json.dumps(call.args, ensure_ascii=False)})", file=sys.stderr)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print()
    print_sources(answer)
    print(f"\n(thread {answer.thread_id}; continue with --thread {answer.thread_id})", file=sys.stderr)
    return 0


def print_sources(answer) -> None:
    """The numbered sources under a streamed answer; the ones it cites are starred."""
    if not answer.sources:
        return
    print("\nSources:")
    for source in answer.sources:
        mark = "*" if source.n in answer.cited else " "
        print(f"{mark}[{source.n}] {source.label()}  (score {source.score:.2f})")
        print(f"      {source.snippet}")
    if answer.citations == "overlap":
        print("(the model wrote no [n] itself: the markers and * show the sources its sentences match word for word)")
