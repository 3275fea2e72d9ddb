"""Counting tokens the way the chat model will: its own tokenizer when it has one.

Local models (transformers) expose their tokenizer; for remote models we estimate with
four characters per token rather than fetch a tokenizer from the network.
"""

from __future__ import annotations

from collections.abc import Callable

CHARS_PER_TOKEN = 4

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About one token per four characters: close enough for English prose and code."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def find_tokenizer(llm):
    """The transformers tokenizer behind a LangChain chat model, if it has one locally."""
    for path in ("tokenizer", "llm.pipeline.tokenizer", "pipeline.tokenizer"):
        obj = llm
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "encode"):
            return obj
    return None


def token_counter(llm) -> TokenCounter:
    """A function counting tokens of text for ``llm`` (exact when its tokenizer is local)."""
    tokenizer = find_tokenizer(llm) if llm is not None else None
    if tokenizer is None:
        return estimate_tokens

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


def truncate_to_tokens(text: str, limit: int, count: TokenCounter) -> str:
    """The longest prefix of ``text`` (cut at a word) that fits in ``limit`` tokens."""
    if count(text) <= limit:
        return text
    low, high = 0, len(text)
    while low < high:  # binary search on characters: counting is cheap, text is short
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    cut = text[:low]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut).rstrip() + " …"
