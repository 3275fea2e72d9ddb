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
    streamed = []
    for event in stream:
        if isinstance(event, Done):
            answer = event.answer
        elif args.json:
            continue
        elif isinstance(event, Token):
            streamed.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ToolCallEvent):
            call = event.tool_call
            print(f"\n  [tool] {call.name}({json.dumps(call.args, ensure_ascii=False)})", file=sys.stderr)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print()
    if answer.kind == "extractive":  # what streamed was the model's answer, which failed the check
        print("\n(docchat's answer check stopped the model's answer; quoted from your documents instead:)\n")
        print(answer.text)
    elif not same_words("".join(streamed), answer.text):  # the check removed what had streamed
        print("\n(docchat's answer check removed part of the streamed answer; the checked answer:)\n")
        print(answer.text)
    print_sources(answer)
    print_not_found(answer)
    print(f"\n(thread {answer.thread_id}; continue with --thread {answer.thread_id})", file=sys.stderr)
    return 0


def same_words(streamed: str, checked: str) -> bool:
    """Whether the checked answer says what streamed: the same words, apart from the [n]
    markers attribution adds after the stream."""
    from app.engine.attribution import CITATION
    from app.engine.guard import words

    def plain(text: str) -> list[str]:
        return words(CITATION.sub(" ", text))

    return plain(streamed) == plain(checked)


def print_sources(answer) -> None:
    """The numbered sources under a streamed answer; the ones it cites are starred."""
    if not answer.sources:
        return
    print("\nSources:")
    for source in answer.sources:
        mark = "*" if source.n in answer.cited else " "
        print(f"{mark}[{source.n}] {source.label()}  (score {source.score:.2f})")
        evidence = answer.evidence_for(source.n)
        for e in evidence:
            print(f"      > {' '.join(e.text.split())}  (support {e.score:.2f})")
        if not evidence:
            print(f"      {source.snippet}")
    if answer.citations == "overlap":
        print("(the model wrote no [n] itself: the markers and * show the sources its sentences match word for word)")


def print_not_found(answer) -> None:
    """A refusal is never a dead end: the closest passages, with scores, and how to widen."""
    if answer.kind != "not_found":
        return
    if answer.closest:
        print("\nClosest passages (not relevant enough to answer from):")
        for source in answer.closest:
            print(f" [{source.n}] {source.label()}  (score {source.score:.2f})")
            print(f"      {source.snippet}")
    if answer.hint:
        print(f"\n{answer.hint}")
